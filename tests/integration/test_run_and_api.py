"""`remote-runtime run NAME -- CMD` (the CI entry point) and the Python API `api.up`,
end to end against the real sshd sandbox and the real managed Jupyter.

Both must tear everything down on every exit path: the remote server, the local
forwarder's port, the state record. Ports 19500-19999 are this file's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.cli import cli_argv, cli_env, describe, list_json, run_cli, wait_until
from support.env import Isolated
from support.net import PortRange, port_closed
from support.procs import GONE_TIMEOUT, alive, wait_gone
from support.remote import Teardown, profiles_for, remote_servers

from remote_runtime import api, health
from remote_runtime.errors import ExitCode, ProfileError
from sandbox import Sandbox

RUN_TIMEOUT = 300.0  # `run` brings the runtime up first (the first run builds the venv)
PORTS = PortRange(19500, 19999)  # this file's ports (test_detached.py uses 19000-19499)
local_port = PORTS.take


def run(profiles: Path, *args: str, timeout: float = RUN_TIMEOUT
        ) -> subprocess.CompletedProcess[str]:
    return run_cli("run", "sb", "--profiles", str(profiles), *args, timeout=timeout)


def assert_nothing_left(box: Sandbox, port: int, isolated: Isolated) -> None:
    assert not wait_gone(box.remote_pids()), "the sandbox still runs remote processes"
    assert remote_servers(box, port) == []
    assert port_closed(port), f"localhost:{port} still accepts connections"
    assert port_closed(port, "::1")
    assert isolated.runtime_records == [], "a state record was left behind"


# --- run ------------------------------------------------------------------------------------


# Inside the command: the environment, the URL as given (host `localhost`), and `list`
# seeing the runtime up while the command runs.
PROBE = textwrap.dedent("""
    import json, os, subprocess, sys, urllib.parse, urllib.request
    env = {k: os.environ.get(k) for k in ("REMOTE_RUNTIME_URL", "REMOTE_RUNTIME_TOKEN",
                                          "REMOTE_RUNTIME_PORT", "REMOTE_RUNTIME_NAME")}
    parts = urllib.parse.urlsplit(env["REMOTE_RUNTIME_URL"])
    api = f"{parts.scheme}://{parts.netloc}/api/status?token={env['REMOTE_RUNTIME_TOKEN']}"
    with urllib.request.urlopen(api, timeout=20) as answer:
        status, body = answer.status, json.load(answer)
    try:
        urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/api/status", timeout=20)
        anonymous = 200
    except urllib.error.HTTPError as exc:
        anonymous = exc.code
    listing = subprocess.run([sys.executable, "-m", "remote_runtime.cli", "list", "--json",
                              "--profiles", sys.argv[1]], capture_output=True, text=True,
                             timeout=60)
    print(json.dumps({"env": env, "status": status, "body": body, "anonymous": anonymous,
                      "list": json.loads(listing.stdout), "pid": os.getppid()}))
""")


@pytest.mark.integration
def test_run_gives_the_command_a_working_runtime(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    result = run(profiles, "--", sys.executable, "-c", PROBE, str(profiles))
    assert result.returncode == 0, describe(result)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    env, token = seen["env"], seen["env"]["REMOTE_RUNTIME_TOKEN"]
    assert token and len(token) >= 32
    assert env["REMOTE_RUNTIME_URL"] == f"http://localhost:{port}/?token={token}"
    assert env["REMOTE_RUNTIME_PORT"] == str(port)
    assert env["REMOTE_RUNTIME_NAME"] == "sb"
    assert seen["status"] == 200 and "kernels" in seen["body"], seen
    assert seen["anonymous"] == 403, "the server answered without the token"
    row = {r["name"]: r for r in seen["list"]}["sb"]
    assert row["state"] == "up" and row["port"] == port and row["detached"] is False
    assert row["pid"] == seen["pid"], "the record's owner is not the `run` process"
    assert token not in result.stderr, "the token leaked into run's progress output"
    assert "stopped the remote Jupyter server" in result.stderr
    assert_nothing_left(box, port, isolated)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("script", "expected"),
    [("exit 7", 7), ("kill -KILL $$", 128 + signal.SIGKILL)],
    ids=["exit-7", "killed-by-signal"],
)
def test_run_propagates_the_exit_status_and_tears_down(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated,
    script: str, expected: int,
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    result = run(profiles, "--port", str(port), "--", "sh", "-c", script)
    assert result.returncode == expected, describe(result)
    assert "stopped the remote Jupyter server" in result.stderr, result.stderr
    assert f"closed the local forwarder on port {port}" in result.stderr
    assert_nothing_left(box, port, isolated)


@pytest.mark.integration
def test_run_command_not_found_is_127_and_tears_down(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    result = run(profiles, "--", "/nonexistent/remote-runtime-test-cmd", "arg")
    assert result.returncode == ExitCode.COMMAND_NOT_FOUND, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "/nonexistent/remote-runtime-test-cmd" in errors[0], errors
    assert "Traceback" not in result.stderr
    assert "stopped the remote Jupyter server" in result.stderr
    assert_nothing_left(box, port, isolated)


@pytest.mark.integration
def test_run_that_cannot_come_up_never_runs_the_command(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    marker = tmp_path / "ran"
    with socket.create_server(("127.0.0.1", port)):
        result = run(profiles, "--port", str(port), "--", "touch", str(marker))
    assert result.returncode == ExitCode.PORT_IN_USE, describe(result)
    assert not marker.exists(), "the command ran without a runtime"
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert isolated.runtime_records == []
    assert not wait_gone(box.remote_pids()), "remote processes left"


@pytest.mark.integration
@pytest.mark.parametrize("target", ["process", "group", "sigterm", "down"],
                         ids=["sigint", "ctrl-c", "sigterm", "down-elsewhere"])
def test_run_interrupted_while_the_command_runs_tears_down_with_130(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated,
    target: str,
) -> None:
    """SIGINT to `run` alone, Ctrl-C (its process group), SIGTERM (a CI runner
    cancelling), or `remote-runtime down` from another terminal."""
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    marker = tmp_path / "command-started"
    command = f"touch {marker}; exec sleep 120"
    stderr_path = tmp_path / "run.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            cli_argv("run", "sb", "--profiles", str(profiles), "--", "sh", "-c", command),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            env=cli_env(), start_new_session=True,
        )
    try:
        wait_until(lambda: marker.exists() or proc.poll() is not None, RUN_TIMEOUT,
                   "the command to start")
        assert proc.poll() is None, stderr_path.read_text()
        sleepers = [pid for pid in teardown.ours() if _cmdline(pid).split() == ["sleep", "120"]]
        assert len(sleepers) == 1, sleepers
        assert isolated.runtime_records, "no state record while the command runs"
        servers = remote_servers(box, port)
        assert len(servers) == 1
        time.sleep(0.2)
        downed = None
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        elif target == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)
        elif target == "down":
            downed = run_cli("down", "sb", "--profiles", str(profiles), timeout=120)
        else:
            os.kill(proc.pid, signal.SIGINT)
        status = proc.wait(timeout=90)
        if downed is not None:
            assert downed.returncode == 0, describe(downed)
            assert f"process {proc.pid} tore the runtime down" in downed.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    err = stderr_path.read_text()
    assert status == ExitCode.INTERRUPTED, f"exit {status}\n{err}"
    assert "stopped the remote Jupyter server" in err, err
    assert not wait_gone(sleepers, 10), "the command outlived `run`"
    assert not wait_gone(servers, GONE_TIMEOUT)
    assert_nothing_left(box, port, isolated)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- the Python API ---------------------------------------------------------------------------


@pytest.mark.integration
def test_api_up_is_healthy_inside_and_torn_down_after(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    messages: list[str] = []
    with api.up("sb", profiles=profiles, progress=messages.append) as rt:
        assert rt.port == port and rt.name == "sb"
        assert rt.url == f"http://localhost:{port}/?token={rt.token}"
        assert rt.health.ok
        assert health.check(rt.port, rt.token).ok, "not healthy inside the block"
        servers = remote_servers(box, port)
        assert len(servers) == 1 and servers[0] == rt.server_pid
        row = list_json(profiles)["sb"]
        assert row["state"] == "up" and row["pid"] == os.getpid()
    assert messages, "no progress reported"
    assert not wait_gone(servers)
    assert_nothing_left(box, port, isolated)


@pytest.mark.integration
def test_api_up_tears_down_when_the_block_raises(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    servers: list[int] = []

    class Boom(Exception):
        pass

    with pytest.raises(Boom), api.up("sb", profiles=str(profiles)) as rt:
        servers = remote_servers(box, rt.port)
        assert servers
        raise Boom
    assert not wait_gone(servers)
    assert_nothing_left(box, port, isolated)
    assert all(not alive(pid) for pid in servers)


def test_api_up_of_an_unknown_profile_raises_a_profile_error(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text('profiles:\n  box:\n    ssh:\n      host: "127.0.0.1"\n')
    with pytest.raises(ProfileError) as caught, api.up("nope", profiles=profiles):
        pass
    assert caught.value.exit_code == ExitCode.PROFILE
    assert "no profile named 'nope'" in caught.value.message
