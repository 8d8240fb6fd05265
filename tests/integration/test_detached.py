"""Detached runtimes end to end: `up --detach`, `list`, `status`, `logs`, `down`, reconnect
after a cut SSH connection, the lease after a SIGKILLed supervisor, and bad input.

Real parts only: the CLI as a subprocess, a real OpenSSH sshd in a network namespace
(conftest's `sandbox`), the real managed Jupyter there, our tunnel. The remote side is
inspected through /proc and `ps` inside the namespace (it shares our PID space).

Ports 19000-19499 are this file's (test_run_and_api uses 19500-19999, others 18888+).
Every test that starts something tears it down in a finalizer (`down --all`, then a
kill of whatever this test's processes left), so a failure leaves nothing running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import (
    assert_one_error_line,
    cli_argv,
    cli_env,
    describe,
    list_json,
    run_cli,
    wait_until,
)
from support.colab_client import ColabClient
from support.env import Isolated
from support.net import PortRange, port_closed
from support.procs import alive, cmdline, descendants, wait_gone
from support.remote import Teardown, profiles_for, remote_server, remote_servers, write_profiles

from remote_runtime import state
from remote_runtime.errors import ExitCode
from sandbox import Sandbox

UP_TIMEOUT = 300.0  # `up --detach` returns once healthy; the first run builds the venv
CLI_TIMEOUT = 60.0
GONE_TIMEOUT = 30.0
RECONNECT_TIMEOUT = 90.0
LEASE = 10  # the smallest lease a profile accepts
# The monitor polls its lease every 0.25 s, then stops the server (SIGTERM, up to 10 s,
# SIGKILL) and waits up to 5 s for the kernels: lease + 15 s, plus room for a busy machine.
LEASE_MARGIN = 30.0

PORTS = PortRange(19000, 19499)  # test_run_and_api.py uses 19500-19999, others 18888+
local_port = PORTS.take


# --- the CLI --------------------------------------------------------------------------------


def cli(profiles: Path, *args: str, timeout: float = CLI_TIMEOUT
        ) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--profiles", str(profiles), timeout=timeout)


def up_detached(profiles: Path, name: str, *extra: str) -> dict[str, Any]:
    result = cli(profiles, "up", name, "--detach", "--json", *extra, timeout=UP_TIMEOUT)
    assert result.returncode == 0, describe(result)
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def assert_down(box: Sandbox, port: int, supervisor: int, remote: list[int]) -> None:
    """Nothing of the runtime is left: supervisor, remote processes, port."""
    assert not wait_gone([supervisor]), f"supervisor {supervisor} still running"
    assert not wait_gone(remote), f"remote processes still running: {remote}"
    assert remote_servers(box, port) == [], "ps in the namespace still shows the server"
    assert port_closed(port), f"localhost:{port} still accepts connections"
    assert port_closed(port, "::1")


# --- detach, list, status, logs, down --------------------------------------------------------


@pytest.mark.integration
def test_detach_list_status_logs_down(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})

    started = time.monotonic()
    info = up_detached(profiles, "sb")
    took = time.monotonic() - started
    assert {"name", "url", "port", "token", "pid"} <= set(info), info
    assert info["name"] == "sb" and info["port"] == port
    token, supervisor = info["token"], info["pid"]
    assert info["url"] == f"http://localhost:{port}/?token={token}"
    # `up` has returned; the supervisor it left behind owns the runtime.
    assert alive(supervisor), f"supervisor {supervisor} is not running"
    assert "_supervise" in cmdline(supervisor) and "sb" in cmdline(supervisor).split()
    assert token not in cmdline(supervisor)
    assert supervisor in teardown.ours()
    server = remote_server(box, port)
    assert server == info["server_pid"]
    record_path = isolated.state / "remote-runtime" / "runtimes" / "sb.json"
    assert (record_path.stat().st_mode & 0o777) == 0o600
    assert json.loads(record_path.read_text())["pid"] == supervisor

    with ColabClient(port, token, timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print(6*7)", timeout=60).strip() == "42"
    kernels = descendants(server)
    assert any("ipykernel" in cmdline(pid) for pid in kernels), kernels

    # list: up, with URL and health, the token only when asked for.
    result = cli(profiles, "list", "--json")
    assert result.returncode == 0, describe(result)
    assert token not in result.stdout + result.stderr
    row = {r["name"]: r for r in json.loads(result.stdout)}["sb"]
    assert row["state"] == "up" and row["port"] == port and row["pid"] == supervisor
    assert row["url"].startswith(f"http://localhost:{port}/") and "token" not in row
    assert row["detached"] is True and row["reconnects"] == 0
    assert row["health"]["ok"] is True, row
    shown = list_json(profiles, "--show-token")["sb"]
    assert shown["token"] == token and shown["url"] == info["url"]
    text = cli(profiles, "list")
    assert text.returncode == 0 and token not in text.stdout and "up" in text.stdout

    # status: the full health check, exit 0.
    result = cli(profiles, "status", "sb")
    assert result.returncode == 0, describe(result)
    assert "healthy" in result.stdout and token not in result.stdout
    result = cli(profiles, "status", "sb", "--json")
    assert result.returncode == 0, describe(result)
    report = json.loads(result.stdout)
    assert report["state"] == "up" and report["health"]["ok"] is True
    assert {c["name"] for c in report["health"]["checks"]} >= {"api", "auth", "extension", "cors"}
    assert token not in result.stdout

    # status exits 7 while the server does not answer (frozen), 0 again once it does.
    os.kill(server, signal.SIGSTOP)
    try:
        result = cli(profiles, "status", "sb")
        assert result.returncode == ExitCode.HEALTH, describe(result)
        assert "unhealthy" in result.stdout and token not in result.stdout
        frozen_row = list_json(profiles)["sb"]
        assert frozen_row["state"] == "up" and frozen_row["health"]["ok"] is False
    finally:
        os.kill(server, signal.SIGCONT)
    wait_until(lambda: cli(profiles, "status", "sb").returncode == 0, 30, "healthy again")

    # A second `up` of the same profile is refused; the first is untouched.
    again = cli(profiles, "up", "sb", "--detach", "--json", timeout=UP_TIMEOUT)
    assert_one_error_line(again, ExitCode.STATE, "already up", str(port))
    assert again.stdout == ""
    assert alive(supervisor) and remote_servers(box, port) == [server]
    assert json.loads(record_path.read_text())["pid"] == supervisor

    # logs: the remote server's log, token hidden.
    result = cli(profiles, "logs", "sb", "-n", "20")
    assert result.returncode == 0, describe(result)
    lines = result.stdout.strip().splitlines()
    assert 0 < len(lines) <= 20, result.stdout
    assert any("NotebookApp]" in line for line in lines), result.stdout
    assert token not in result.stdout + result.stderr
    everything = cli(profiles, "logs", "sb", "-n", "1000")
    assert "Jupyter Notebook 6.5.7 is running" in everything.stdout, everything.stdout
    assert token not in everything.stdout
    supervisor_log = isolated.state / "remote-runtime" / "logs" / "sb.log"
    assert "ready on port" in supervisor_log.read_text()
    assert token not in supervisor_log.read_text()

    # down: the supervisor tears everything down, from this other process.
    result = cli(profiles, "down", "sb", timeout=120)
    assert result.returncode == 0, describe(result)
    assert "runtime 'sb' is down" in result.stdout
    assert_down(box, port, supervisor, [server, *kernels])
    assert isolated.runtime_records == []
    assert list_json(profiles)["sb"]["state"] == "down"
    log_text = supervisor_log.read_text()
    assert f"stopped the remote Jupyter server (pid {server})" in log_text, log_text
    assert token not in log_text

    # A second down: not up, one line, exit 9.
    assert_one_error_line(cli(profiles, "down", "sb"), ExitCode.NOT_RUNNING, "'sb' is not up")
    print(f"up --detach took {took:.1f}s")


@pytest.mark.integration
def test_detach_that_fails_leaves_nothing_behind(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    """The supervisor reports its error to `up`, tears down, and exits."""
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    with socket.create_server(("127.0.0.1", port)):  # the port is taken on this machine
        result = cli(profiles, "up", "sb", "--detach", "--json", timeout=UP_TIMEOUT)
        assert_one_error_line(result, ExitCode.PORT_IN_USE, f"port {port}", "this machine")
        assert result.stdout == ""
        assert teardown.ours() == [], "the supervisor outlived its failure"
    assert isolated.runtime_records == []
    assert not wait_gone(box.remote_pids()), "remote processes left"
    log_text = (isolated.state / "remote-runtime" / "logs" / "sb.log").read_text()
    assert f"error: port {port} is already in use on this machine" in log_text, log_text
    assert list_json(profiles)["sb"]["state"] == "down"


def remote_log_followers(box: Sandbox, run_id: str) -> list[int]:
    """The remote agents serving `logs -f` of `run_id`."""
    return [pid for pid in box.remote_pids()
            if cmdline(pid).split()[-2:] == [run_id, "-f"] and alive(pid)]


class Follow:
    """`remote-runtime logs NAME -f` in the background, its output in a file."""

    def __init__(self, profiles: Path, name: str, out: Path):
        self.out = out
        with out.open("w") as sink:
            self.proc = subprocess.Popen(
                cli_argv("logs", name, "-f", "--profiles", str(profiles)),
                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                env=cli_env(), start_new_session=True)

    @property
    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        wait_until(lambda: needle in self.text or self.proc.poll() is not None, timeout,
                   f"{needle!r} in the followed log")
        assert needle in self.text, f"exit {self.proc.poll()}; {self.text}"

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`logs -f` still running after {timeout:.0f}s") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.mark.integration
def test_logs_follow_streams_ends_with_the_runtime_and_leaves_nothing_remote(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    info = up_detached(profiles, "sb")
    token, run_id = info["token"], info["run_id"]

    follow = Follow(profiles, "sb", tmp_path / "follow-1.out")
    try:
        follow.wait_for("NotebookApp]")
        agents = wait_until(lambda: remote_log_followers(box, run_id), 10, "remote agent")
        assert len(agents) == 1, agents
        # A new line (a refused request) shows up while following.
        marker = f"rr-follow-{uuid.uuid4().hex[:8]}"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/{marker}", timeout=10)
        follow.wait_for(marker)
        follow.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert follow.wait(30) == 0
        assert not wait_gone(agents, GONE_TIMEOUT), "the remote `logs -f` agent outlived it"
    finally:
        follow.kill()
    assert token not in follow.text

    follow = Follow(profiles, "sb", tmp_path / "follow-2.out")
    try:
        follow.wait_for("NotebookApp]")
        agents = wait_until(lambda: remote_log_followers(box, run_id), 10, "remote agent")
        result = cli(profiles, "down", "sb", timeout=120)
        assert result.returncode == 0, describe(result)
        assert follow.wait(30) == 0, "`logs -f` did not end when the runtime stopped"
        assert not wait_gone(agents, GONE_TIMEOUT)
    finally:
        follow.kill()
    assert token not in follow.text
    assert not wait_gone(box.remote_pids()), "remote processes left"


@pytest.mark.integration
def test_two_runtimes_at_once_then_down_all(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port_a, port_b = local_port(), local_port()
    profiles = profiles_for(tmp_path, box, teardown, a={"port": port_a}, b={"port": port_b})
    info_a = up_detached(profiles, "a")
    text = cli(profiles, "up", "b", "--detach", timeout=UP_TIMEOUT)  # the text rendering
    assert text.returncode == 0, describe(text)
    info_b = list_json(profiles, "--show-token")["b"]
    assert info_b["url"] in text.stdout
    assert f"supervisor pid {info_b['pid']}" in text.stdout
    assert "remote-runtime down b" in text.stdout
    assert (info_a["port"], info_b["port"]) == (port_a, port_b)
    assert info_a["pid"] != info_b["pid"] and info_a["token"] != info_b["token"]
    servers = {name: remote_server(box, port) for name, port in (("a", port_a), ("b", port_b))}

    rows = list_json(profiles)
    for name, info in (("a", info_a), ("b", info_b)):
        assert rows[name]["state"] == "up" and rows[name]["pid"] == info["pid"], rows[name]
        assert rows[name]["health"]["ok"] is True, rows[name]
        result = cli(profiles, "status", name)
        assert result.returncode == 0, describe(result)
    # Each port reaches its own server (its token works there, not on the other).
    with ColabClient(port_a, info_a["token"], timeout=30) as colab:
        assert colab.request("GET", "/api/status")[0] == 200
    with ColabClient(port_b, info_b["token"], timeout=30) as colab:
        assert colab.request("GET", "/api/status")[0] == 200
    assert len(isolated.runtime_records) == 2

    result = cli(profiles, "down", "--all", timeout=180)
    assert result.returncode == 0, describe(result)
    assert "runtime 'a' is down" in result.stdout and "runtime 'b' is down" in result.stdout
    assert_down(box, port_a, info_a["pid"], [servers["a"]])
    assert_down(box, port_b, info_b["pid"], [servers["b"]])
    assert isolated.runtime_records == []
    assert {row["state"] for row in list_json(profiles).values()} == {"down"}
    again = cli(profiles, "down", "--all")
    assert again.returncode == 0 and "no runtimes are up" in again.stdout, describe(again)


# --- faults: a cut connection, a killed supervisor ----------------------------------------


@pytest.mark.integration
def test_reconnect_after_the_ssh_connection_is_cut_keeps_the_kernel(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    info = up_detached(profiles, "sb")
    token, supervisor = info["token"], info["pid"]
    server = remote_server(box, port)
    with ColabClient(port, token, timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "x = 41\nprint('set')", timeout=60).strip() == "set"
    kernels = descendants(server)

    killed = box.kill_sessions()  # the network drops: every SSH connection dies at once
    assert killed, "no SSH session to cut"
    cut_at = time.monotonic()

    def reconnected() -> dict[str, Any] | None:
        row = list_json(profiles)["sb"]
        return row if row.get("reconnects", 0) >= 1 else None

    row = wait_until(reconnected, RECONNECT_TIMEOUT, "reconnects >= 1 in list --json",
                     interval=0.5)
    took = time.monotonic() - cut_at
    assert row["state"] == "up" and row["pid"] == supervisor and row["port"] == port

    def healthy() -> bool:
        return cli(profiles, "status", "sb").returncode == 0

    wait_until(healthy, 30, "status healthy after the reconnect", interval=1)
    assert alive(supervisor)
    assert remote_server(box, port) == server, "the remote server was restarted"
    assert all(alive(pid) for pid in kernels), "a kernel died during the cut"
    # The same kernel, through the same local port, still has its variable.
    with ColabClient(port, token, timeout=30) as colab:
        assert colab.execute(kernel, "print(x+1)", timeout=60).strip() == "42"
    log_text = (isolated.state / "remote-runtime" / "logs" / "sb.log").read_text()
    assert "reconnected (reconnect #1)" in log_text, log_text
    assert token not in log_text

    # A second cut: counted, and the runtime comes back again.
    assert box.kill_sessions()
    wait_until(lambda: list_json(profiles)["sb"].get("reconnects", 0) >= 2, RECONNECT_TIMEOUT,
               "reconnects >= 2", interval=0.5)
    wait_until(healthy, 30, "status healthy after the second reconnect", interval=1)
    status_json = json.loads(cli(profiles, "status", "sb", "--json").stdout)
    assert status_json["reconnects"] == 2 and status_json["health"]["ok"] is True
    with ColabClient(port, token, timeout=30) as colab:
        assert colab.execute(kernel, "x += 1\nprint(x)", timeout=60).strip() == "42"
    assert remote_server(box, port) == server

    result = cli(profiles, "down", "sb", timeout=120)
    assert result.returncode == 0, describe(result)
    assert_down(box, port, supervisor, [server, *kernels])
    assert isolated.runtime_records == []
    print(f"reconnect seen by list after {took:.1f}s")


@pytest.mark.integration
def test_reconnect_after_the_connection_hangs_silently(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    """No EOF, no RST (a laptop asleep, a dead Wi-Fi): the sshd serving the runtime is
    frozen with SIGSTOP. Only the heartbeat's unanswered keepalive can notice."""
    box = clean_remote
    assert box.sshd is not None
    port = local_port()
    lease = 40  # heartbeat every 10 s, answer within 15 s: noticed well within the lease
    profiles = profiles_for(tmp_path, box, teardown,
                            sb={"port": port, "jupyter": {"lease_seconds": lease}})
    info = up_detached(profiles, "sb")
    token, supervisor = info["token"], info["pid"]
    server = remote_server(box, port)
    with ColabClient(port, token, timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "x = 41\nprint('set')", timeout=60).strip() == "set"

    frozen = box.sshd.kill_sessions(signal.SIGSTOP)
    assert frozen, "no SSH session to freeze"
    try:
        frozen_at = time.monotonic()

        def reconnected() -> bool:
            return list_json(profiles)["sb"].get("reconnects", 0) >= 1

        wait_until(reconnected, lease / 4 + 15 + 30, "reconnect after a silent hang",
                   interval=1)
        took = time.monotonic() - frozen_at
        wait_until(lambda: cli(profiles, "status", "sb").returncode == 0, 30,
                   "status healthy after the reconnect", interval=1)
        assert remote_server(box, port) == server, "the remote server was restarted"
        with ColabClient(port, token, timeout=30) as colab:
            assert colab.execute(kernel, "print(x+1)", timeout=60).strip() == "42"
        log_text = (isolated.state / "remote-runtime" / "logs" / "sb.log").read_text()
        assert "no answer to a keepalive" in log_text, log_text
    finally:
        for pid in frozen:  # the frozen sessions were started for this test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    result = cli(profiles, "down", "sb", timeout=120)
    assert result.returncode == 0, describe(result)
    assert_down(box, port, supervisor, [server])
    assert isolated.runtime_records == []
    print(f"silent hang noticed and reconnected after {took:.1f}s")


@pytest.mark.integration
def test_sigkilled_supervisor_lease_stops_server_then_down_cleans_stale_record(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown,
                            sb={"port": port, "jupyter": {"lease_seconds": LEASE}})
    info = up_detached(profiles, "sb")
    supervisor = info["pid"]
    server = remote_server(box, port)
    with ColabClient(port, info["token"], timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print(1)", timeout=60).strip() == "1"
    kernels = descendants(server)
    assert kernels

    os.kill(supervisor, signal.SIGKILL)  # no teardown can run: only the lease is left
    killed_at = time.monotonic()
    assert not wait_gone([supervisor], 10)
    row = list_json(profiles)["sb"]
    assert row["state"] == "stale", row
    assert str(supervisor) in row.get("stale", ""), row
    assert "url" not in row and "health" not in row
    assert port_closed(port), "the forwarder died with its process"

    left = wait_gone([server, *kernels], LEASE + LEASE_MARGIN)
    took = time.monotonic() - killed_at
    assert not left, f"still running {took:.0f}s after the kill (lease {LEASE}s): {left}"
    # The lease ran out (it was last renewed up to one heartbeat, lease/4, before the
    # kill); the server did not stop merely because its SSH connection closed.
    monitor_log = box.remote_cache_dir / "remote-runtime" / "runs" / info["run_id"] / "monitor.log"
    assert "stopping: lease expired" in monitor_log.read_text(), monitor_log.read_text()
    assert took > LEASE - LEASE / 4 - 1, f"the server stopped {took:.1f}s after the kill"
    assert remote_servers(box, port) == []
    assert not wait_gone(box.remote_pids()), "the sandbox still runs remote processes"
    status = cli(profiles, "status", "sb")
    assert_one_error_line(status, ExitCode.NOT_RUNNING, f"process {supervisor} is gone")
    assert list_json(profiles)["sb"]["state"] == "stale"

    result = cli(profiles, "down", "sb", timeout=120)
    assert result.returncode == 0, describe(result)
    assert "runtime 'sb' is down" in result.stdout
    assert "removed the state record" in result.stderr, result.stderr
    assert isolated.runtime_records == []
    assert list_json(profiles)["sb"]["state"] == "down"
    assert_one_error_line(cli(profiles, "down", "sb"), ExitCode.NOT_RUNNING)
    print(f"lease stopped the server {took:.1f}s after the SIGKILL")


@pytest.mark.integration
def test_down_after_a_sigkilled_supervisor_stops_the_server_at_once(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    """The default lease is minutes: `down` must not wait for it."""
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    info = up_detached(profiles, "sb")
    server = remote_server(box, port)
    os.kill(info["pid"], signal.SIGKILL)
    assert not wait_gone([info["pid"]], 10)
    assert list_json(profiles)["sb"]["state"] == "stale"
    assert alive(server), "the server must outlive its supervisor until the lease ends"

    started = time.monotonic()
    result = cli(profiles, "down", "sb", timeout=120)
    assert result.returncode == 0, describe(result)
    assert "stopping the remote server directly" in result.stderr, result.stderr
    assert "remote server: stopped by remote-runtime" in result.stderr, result.stderr
    assert not wait_gone([server], 10), "down left the server running"
    assert time.monotonic() - started < 60
    assert remote_servers(box, port) == []
    assert not wait_gone(box.remote_pids())
    assert isolated.runtime_records == []
    assert list_json(profiles)["sb"]["state"] == "down"


# --- bad input (no sandbox needed) ------------------------------------------------------------


def plain_profiles(tmp_path: Path) -> Path:
    """Two profiles that are never brought up (nothing listens on port 9)."""
    ssh = {"host": "127.0.0.1", "port": 9, "user": "nobody"}
    return write_profiles(tmp_path / "profiles.yaml", {"box": {"ssh": ssh}, "other": {"ssh": ssh}})


def records_dir(isolated: Isolated) -> Path:
    path = isolated.state / "remote-runtime" / "runtimes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=30)
    return proc.pid


@pytest.mark.parametrize("command", ["down", "status", "logs"])
def test_unknown_profile_is_exit_3_with_one_line(tmp_path: Path, command: str) -> None:
    result = cli(plain_profiles(tmp_path), command, "boxx")
    line = assert_one_error_line(result, ExitCode.PROFILE, "no profile named 'boxx'")
    assert "profiles.yaml" in line
    assert "did you mean 'box'?" in result.stderr


@pytest.mark.parametrize("command", ["down", "status", "logs"])
def test_profile_not_up_is_exit_9_with_one_line(tmp_path: Path, command: str,
                                                isolated: Isolated) -> None:
    result = cli(plain_profiles(tmp_path), command, "box")
    assert_one_error_line(result, ExitCode.NOT_RUNNING, "runtime 'box' is not up")
    assert isolated.runtime_records == []


def test_down_needs_a_name_or_all(tmp_path: Path) -> None:
    profiles = plain_profiles(tmp_path)
    assert cli(profiles, "down").returncode == ExitCode.USAGE
    assert cli(profiles, "down", "box", "--all").returncode == ExitCode.USAGE
    result = cli(profiles, "down", "--all")
    assert result.returncode == 0 and "no runtimes are up" in result.stdout, describe(result)


def test_corrupt_record_is_reported_not_fatal_and_down_removes_it(
    tmp_path: Path, isolated: Isolated
) -> None:
    profiles = plain_profiles(tmp_path)
    corrupt = records_dir(isolated) / "box.json"
    corrupt.write_text("\x00garbage{{")

    for args in (("list",), ("list", "--json")):
        result = cli(profiles, *args)
        assert result.returncode == 0, describe(result)
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "unreadable state record" in warnings[0], describe(result)
        assert str(corrupt) in result.stderr.replace("\n", "")
    rows = list_json(profiles)
    assert set(rows) == {"box", "other"} and rows["other"]["state"] == "down"

    status = cli(profiles, "status", "box")
    assert_one_error_line(status, ExitCode.STATE, "unreadable state record")
    assert "remote-runtime down box" in status.stderr

    result = cli(profiles, "down", "box")
    assert result.returncode == 0, describe(result)
    assert "removed an unreadable state record" in result.stderr
    assert not corrupt.exists()
    clean = cli(profiles, "list")
    assert clean.returncode == 0 and "warning" not in clean.stderr, describe(clean)


def test_record_of_an_unknown_version_is_reported(tmp_path: Path, isolated: Isolated) -> None:
    profiles = plain_profiles(tmp_path)
    (records_dir(isolated) / "box.json").write_text(json.dumps({"version": 99, "name": "box"}))
    result = cli(profiles, "list", "--json")
    assert result.returncode == 0, describe(result)
    assert "unknown version" in result.stderr
    assert {row["name"] for row in json.loads(result.stdout)} == {"box", "other"}
    result = cli(profiles, "down", "box")
    assert result.returncode == 0, describe(result)
    assert isolated.runtime_records == []


def test_stale_record_without_endpoint(tmp_path: Path, isolated: Isolated) -> None:
    """A record whose owner died is stale: not up for status/logs, cleaned by down."""
    profiles = plain_profiles(tmp_path)
    pid = dead_pid()
    record = state.Record(name="box", kind="ssh", pid=pid, port=19499, token="secret" * 4,
                          run_id="box-0123456789ab", target="nobody@127.0.0.1:9")
    state.write(record)
    rows = list_json(profiles)
    assert rows["box"]["state"] == "stale" and str(pid) in rows["box"]["stale"]
    assert "secret" not in json.dumps(rows)
    for command in ("status", "logs"):
        assert_one_error_line(cli(profiles, command, "box"), ExitCode.NOT_RUNNING,
                              f"owner process {pid} is gone")
    result = cli(profiles, "down", "box")
    assert result.returncode == 0, describe(result)
    assert "lease" in result.stderr and "removed the state record" in result.stderr
    assert isolated.runtime_records == []
    assert list_json(profiles)["box"]["state"] == "down"


def test_record_of_a_profile_that_is_gone_is_reported(tmp_path: Path, isolated: Isolated) -> None:
    profiles = plain_profiles(tmp_path)
    state.write(state.Record(name="ghost", kind="ssh", pid=dead_pid(), port=19498, token="t",
                             run_id="ghost-0123456789ab", target="x"))
    result = cli(profiles, "list")
    assert result.returncode == 0, describe(result)
    assert "runtime 'ghost' is recorded but its profile is not in" in result.stderr


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not remote-runtime (what a recycled PID points at)."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_list_does_not_trust_a_recycled_pid(
    tmp_path: Path, isolated: Isolated, stranger: subprocess.Popen[bytes]
) -> None:
    profiles = plain_profiles(tmp_path)
    # Written an hour ago by an owner long gone; the PID now belongs to `stranger`.
    state.write(state.Record(name="box", kind="ssh", pid=stranger.pid, port=19497,
                             token="t" * 48, run_id="box-0123456789ab", target="x",
                             since=time.time() - 3600))
    assert list_json(profiles)["box"]["state"] == "stale"
    assert cli(profiles, "status", "box").returncode == ExitCode.NOT_RUNNING


def test_down_never_signals_a_process_that_is_not_the_owner(
    tmp_path: Path, isolated: Isolated, stranger: subprocess.Popen[bytes]
) -> None:
    profiles = plain_profiles(tmp_path)
    state.write(state.Record(name="box", kind="ssh", pid=stranger.pid, port=19497,
                             token="t" * 48, run_id="box-0123456789ab", target="x",
                             since=time.time() - 3600))
    result = cli(profiles, "down", "box")
    assert result.returncode == 0, describe(result)
    assert stranger.poll() is None, "down signalled a process that is not remote-runtime"
    # Its PID started after the record was written: not the owner, who is gone.
    assert "is gone" in result.stderr
    assert isolated.runtime_records == []


API_OWNER = """
import json, sys
from remote_runtime import api
with api.up("sb", profiles=sys.argv[1]) as rt:
    print(json.dumps({"port": rt.port, "token": rt.token}), flush=True)
    sys.stdin.read()  # hold the runtime until the test closes our stdin
"""


@pytest.mark.integration
def test_down_of_a_runtime_held_by_an_api_script_is_all_or_nothing(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    """`down` from another terminal either tears the runtime down (port closed too) or
    refuses and leaves it working; never half of it."""
    box = clean_remote
    port = local_port()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    owner = subprocess.Popen([sys.executable, "-c", API_OWNER, str(profiles)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=cli_env(), text=True)
    try:
        assert owner.stdout is not None and owner.stdin is not None
        line = owner.stdout.readline()
        assert line, f"the API script wrote nothing (exit {owner.poll()})"
        held = json.loads(line)
        assert held["port"] == port
        server = remote_server(box, port)
        result = cli(profiles, "down", "sb", timeout=120)
        if result.returncode == 0:
            assert not wait_gone([server])
            wait_until(lambda: port_closed(port), 10, "the port closed after down")
            assert isolated.runtime_records == []
            assert "is gone" not in result.stderr, f"the owner is alive; {describe(result)}"
        else:
            assert alive(server) and isolated.runtime_records
            with ColabClient(port, held["token"], timeout=30) as colab:
                assert colab.request("GET", "/api/status")[0] == 200
    finally:
        if owner.poll() is None and owner.stdin is not None:
            owner.stdin.close()
            try:
                owner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                owner.kill()
                owner.wait(timeout=10)
