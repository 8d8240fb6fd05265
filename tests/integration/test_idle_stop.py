"""Idle shutdown done on the VM: with `gce.idle_stop_minutes`, the VM's agent stops the
server and powers the VM off once no kernel is busy and no client is connected for that
long. The "VM" is the sandbox; its power off is a stand-in that records the call."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from support import notebooks as nb
from support.cli import list_json, run_cli, wait_until
from support.gce import Dlvm, existing_vm, gce_body
from support.remote import remote_servers

IDLE_MINUTES = 0.25  # 15 s


def test_idle_vm_is_powered_off_after_exec_used_it(dlvm: Dlvm, tmp_path: Path) -> None:
    existing_vm(dlvm.fake, dlvm.box, "dl-idle")
    profiles = dlvm.profiles(tmp_path / "profiles.yaml", **{"idle-vm": gce_body(
        dlvm.box, instance="dl-idle", idle_stop_minutes=IDLE_MINUTES)})
    up = run_cli("up", "idle-vm", "--detach", "--json", "--profiles", str(profiles),
                 timeout=300)
    assert up.returncode == 0, up.stderr
    port = json.loads(up.stdout)["port"]

    # exec uses the runtime that is up (and leaves it up): a parameterized notebook.
    notebook = nb.write(tmp_path / "params.ipynb", ("alpha = 0.1\nname = 'default'",
                                                     ["parameters"]),
                        "print(alpha * 2, name)")
    ran = run_cli("exec", "idle-vm", str(notebook), "-p", "alpha=0.5", "-p", "name=fast run",
                  "--profiles", str(profiles), timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert f"using runtime 'idle-vm', up on port {port}" in ran.stderr
    written = nb.read(tmp_path / "params.executed.ipynb")
    injected = written.cells[1]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert injected.source == '# Parameters\nalpha = 0.5\nname = "fast run"\n'
    assert nb.outputs(written.cells[2]) == "1.0 fast run\n"
    assert written.metadata["remote_runtime"]["parameters"] == {"alpha": 0.5,
                                                                "name": "fast run"}

    # list shows how long it has been idle and when the agent will power it off.
    row = list_json(profiles)["idle-vm"]
    assert row["state"] == "up" and row["busy"] == 0 and row["connections"] == 0
    assert row["idle_seconds"] < IDLE_MINUTES * 60
    assert 0 < row["idle_stop_at"] - time.time() <= IDLE_MINUTES * 60 + 5
    text = run_cli("list", "--profiles", str(profiles))
    assert "IDLE" in text.stdout and re.search(r"\ds, stop ~\d\d:\d\d", text.stdout), \
        text.stdout
    assert not dlvm.host.powered_off

    powered = wait_until(lambda: dlvm.host.powered_off, 90, "the VM's power off")
    assert len(powered) == 1
    assert not remote_servers(dlvm.box, port)  # the agent stopped the server first
    # The supervisor saw the server stop for idleness and tore down; nothing is left.
    wait_until(lambda: list_json(profiles)["idle-vm"]["state"] == "down", 60, "teardown")
    log = Path(json.loads(up.stdout)["log"]).read_text()
    assert "idle for" in log and "the VM powers off" in log, log
