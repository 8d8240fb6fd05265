"""Parallel CI jobs from one `{run}` profile: each runtime on its own VM and its own port;
a Spot VM preempted while up is reported by list and status (exit 12); `down --all`
deletes what this machine created and still runs, leftovers of earlier runs included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from support.cli import (
    assert_one_error_line,
    cli_argv,
    cli_env,
    describe,
    list_json,
    run_cli,
    wait_until,
)
from support.gce import PROJECT, ZONE, Dlvm, gce_body
from support.remote import remote_server

from remote_runtime.errors import ExitCode
from remote_runtime.providers.gce.create import machine_label


def test_parallel_runtimes_preemption_and_down_all(dlvm: Dlvm, tmp_path: Path) -> None:
    create = {"machine_type": "g2-standard-4", "spot": True,
              "accelerator": {"type": "nvidia-l4", "count": 1},
              "image": {"family": "common-cu124-ubuntu-2204",
                        "project": "deeplearning-platform-release"}}
    profiles = dlvm.profiles(tmp_path / "profiles.yaml", ci=gce_body(
        dlvm.box, instance="ci-{run}", create=create))
    # A VM this machine created for `ci` in an earlier run whose record is gone (a CI
    # runner killed hard), and one another machine created: only the first is ours.
    dlvm.fake.add_instance(PROJECT, ZONE, "ci-old001", labels={
        "created-by": "remote-runtime", "remote-runtime-profile": "ci",
        "remote-runtime-host": machine_label(), "remote-runtime-run": "earlier"})
    dlvm.fake.add_instance(PROJECT, ZONE, "ci-else01", labels={
        "created-by": "remote-runtime", "remote-runtime-profile": "ci",
        "remote-runtime-host": "another-machine"})

    jobs = [subprocess.Popen(cli_argv("up", "ci", "--detach", "--json", "--profiles",
                                      str(profiles)), env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    infos = []
    for job in jobs:
        out, err = job.communicate(timeout=400)
        assert job.returncode == 0, err
        infos.append(json.loads(out))
    first, second = infos
    assert first["name"] != second["name"] and first["port"] != second["port"]
    rows = list_json(profiles)
    assert {name: row["state"] for name, row in rows.items()} == {
        first["name"]: "up", second["name"]: "up"}
    assert all(row["profile"] == "ci" for row in rows.values())
    assert dlvm.fake.live(PROJECT, ZONE, first["name"]) is not None
    assert dlvm.fake.live(PROJECT, ZONE, second["name"]) is not None

    # Compute Engine takes the first VM back: its server goes down with it.
    operation = dlvm.fake.preempt(PROJECT, ZONE, first["name"])
    os.kill(remote_server(dlvm.box, first["port"]), signal.SIGKILL)
    when = operation.to_json()["insertTime"]
    wait_until(lambda: list_json(profiles)[first["name"]]["state"] == "preempted", 60,
               "the preempted state")
    row = list_json(profiles)[first["name"]]
    assert row["ended"] == f"its Spot VM was preempted at {when}"
    status = run_cli("status", first["name"], "--profiles", str(profiles))
    assert_one_error_line(status, ExitCode.PREEMPTED, f"its Spot VM was preempted at {when}")
    log = Path(first["log"]).read_text()
    assert "preempted" in log, log
    assert list_json(profiles)[second["name"]]["state"] == "up"
    healthy = run_cli("status", second["name"], "--json", "--profiles", str(profiles))
    assert healthy.returncode == 0, describe(healthy)
    assert json.loads(healthy.stdout)["gpu"] == {
        "ok": True, "detail": "0: NVIDIA L4 (driver 550.90.07, 23034 MiB)"}

    down = run_cli("down", "--all", "--profiles", str(profiles), timeout=300)
    assert down.returncode == 0, describe(down)
    assert f"runtime '{second['name']}' is down" in down.stdout
    # Its supervisor tore it down, VM included (its log says so).
    assert f"instance {second['name']} deleted" in Path(second["log"]).read_text()
    assert "instance ci-old001 was left by an earlier run of 'ci'" in down.stderr
    assert dlvm.fake.live(PROJECT, ZONE, second["name"]) is None
    assert dlvm.fake.live(PROJECT, ZONE, "ci-old001") is None
    assert dlvm.fake.live(PROJECT, ZONE, "ci-else01") is not None
    assert list_json(profiles) == {"ci": list_json(profiles)["ci"]}  # back to one row
    assert list_json(profiles)["ci"]["state"] == "down"
    assert not dlvm.guard.isolated.runtime_records
