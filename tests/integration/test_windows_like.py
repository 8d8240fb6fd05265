"""Runtimes held by a CLI that runs as on Windows (support/windows_like.py: POSIX-only modules
and SIGHUP gone, SIGBREAK present, SIGTERM uncatchable), against the real sandbox host.

- `up --detach`, `list`, `status`, `logs`, `down`: the supervisor, detached, cannot catch
  SIGTERM here (as on Windows), so a clean teardown proves `down` asked through a stop
  request; a `down` that fell back to SIGTERM would leave the teardown lines out of the
  supervisor's log and the remote server running until its lease ended.
- A foreground `up` ended by Ctrl-Break tears everything down.
- Ctrl-C while `up --detach` waits for its supervisor stops the supervisor the same way.

Part of the portable tier (marked `portable`) and of the integration tier (the sandbox).
Ports 23000-23999 are this file's.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import windows_like
from support.cli import UpProcess, cli_argv, describe, wait_until
from support.colab_client import ColabClient
from support.env import Isolated
from support.net import PortRange, port_closed
from support.procs import alive, cmdline, wait_gone
from support.remote import Teardown, profiles_for, remote_server, remote_servers

from remote_runtime.errors import ExitCode
from sandbox import Sandbox

pytestmark = pytest.mark.portable

UP_TIMEOUT = 300.0  # the first run on a machine builds the managed venv
PORTS = PortRange(23000, 23999)


def cli(profiles: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return windows_like.run_cli(*args, "--profiles", str(profiles), timeout=timeout)


def test_detached_runtime_is_stopped_by_a_stop_request(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box, port = clean_remote, PORTS.take()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})

    result = cli(profiles, "up", "sb", "--detach", "--json", timeout=UP_TIMEOUT)
    assert result.returncode == 0, describe(result)
    info: dict[str, Any] = json.loads(result.stdout)
    supervisor, token = info["pid"], info["token"]
    assert info["port"] == port and alive(supervisor)
    assert "_supervise" in cmdline(supervisor)
    server = remote_server(box, port)

    row = {r["name"]: r for r in json.loads(cli(profiles, "list", "--json").stdout)}["sb"]
    assert row["state"] == "up" and row["pid"] == supervisor and row["health"]["ok"], row
    status = cli(profiles, "status", "sb")
    assert status.returncode == 0 and "healthy" in status.stdout, describe(status)
    logs = cli(profiles, "logs", "sb", "-n", "5")
    assert logs.returncode == 0 and logs.stdout.strip(), describe(logs)
    assert token not in status.stdout + logs.stdout
    with ColabClient(port, token, timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print(6*7)", timeout=60).strip() == "42"

    down = cli(profiles, "down", "sb", timeout=120)
    assert down.returncode == 0, describe(down)
    assert f"process {supervisor} tore the runtime down" in down.stderr, describe(down)
    assert not wait_gone([supervisor]), "the supervisor is still running"
    log = (isolated.state / "remote-runtime" / "logs" / "sb.log").read_text()
    assert "stop requested (remote-runtime down)" in log, log
    assert f"teardown: stopped the remote Jupyter server (pid {server})" in log, log
    assert remote_servers(box, port) == [] and port_closed(port)
    assert isolated.state_files == [p for p in isolated.state_files if p.suffix == ".log"]


def test_foreground_up_ends_on_ctrl_break(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated,
    start_up: Callable[..., UpProcess]
) -> None:
    box, port = clean_remote, PORTS.take()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    up = start_up("sb", "--profiles", str(profiles), env=windows_like.env())
    assert up.wait_ready(UP_TIMEOUT)[0] == port
    server = remote_server(box, port)
    up.signal(windows_like.SIGBREAK)
    assert up.wait(60) == ExitCode.OK, up.describe()
    assert f"stopped the remote Jupyter server (pid {server}) and its kernels" in up.stderr
    wait_until(lambda: remote_servers(box, port) == [], 30, "the remote server to stop")
    assert port_closed(port) and isolated.runtime_records == []


def test_ctrl_c_while_a_detached_runtime_starts_tears_it_down(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    """Ctrl-C reaches `up --detach` only (the supervisor has no console on Windows, its own
    session elsewhere): `up` asks the supervisor to stop, as `down` does."""
    box, port = clean_remote, PORTS.take()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    up = subprocess.Popen(
        cli_argv("up", "sb", "--detach", "--profiles", str(profiles)),
        env=windows_like.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        records = wait_until(lambda: isolated.runtime_records, 60, "the supervisor's record")
        supervisor = json.loads(records[0].read_text())["pid"]
        assert "_supervise" in cmdline(supervisor)
        up.send_signal(signal.SIGINT)
        _out, err = up.communicate(timeout=180)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate(timeout=10)
    assert up.returncode == ExitCode.INTERRUPTED, err
    assert not wait_gone([supervisor]), "the supervisor is still running"
    log = (isolated.state / "remote-runtime" / "logs" / "sb.log").read_text()
    assert "stop requested (remote-runtime down)" in log, log
    wait_until(lambda: remote_servers(box, port) == [], 30, "no remote server")
    assert port_closed(port) and isolated.runtime_records == []
    assert not list((isolated.state / "remote-runtime" / "runtimes").glob("*.stop"))
