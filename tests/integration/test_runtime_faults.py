"""A runtime outlives the laptop's own troubles: a full disk, a read-only state directory,
a storm of signals. Real parts: the CLI as a subprocess, the sandbox's sshd in its own
network namespace, the managed Jupyter there, our tunnel, a real tmpfs for the state.

Ports 22500-22999 are this file's (test_forwarder_faults.py uses 22000-22499).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import UpProcess, cli_argv, cli_env, describe, run_cli, wait_until
from support.env import Isolated, unavailable
from support.net import PortRange, port_closed
from support.procs import alive, wait_gone
from support.remote import Teardown, profiles_for, remote_server

from sandbox import Sandbox

PORTS = PortRange(22500, 22999)
UP_TIMEOUT = 300.0
RECONNECT_TIMEOUT = 90.0


def cli(profiles: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--profiles", str(profiles), timeout=timeout)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path` (root only), unmounted afterwards."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        unavailable(f"a tmpfs mount (root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(path)], check=False)
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` read-only from now on: a read-only bind mount of it over itself. Files
    already open for writing (the supervisor's log) stay writable, as on a laptop whose
    state directory was remounted read-only under a running program."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def storm(proc: subprocess.Popen[str], seconds: float = 30) -> None:
    """SIGTERM after SIGTERM, as fast as they can be sent, until `proc` exits."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)


def cut_and_wait_healthy(box: Sandbox, profiles: Path) -> None:
    """Kill every SSH session (the network drops); wait until `status` is healthy again,
    which needs the supervisor to have reconnected."""
    assert box.kill_sessions(), "no SSH session to cut"
    time.sleep(1)
    wait_until(lambda: cli(profiles, "status", "sb").returncode == 0, RECONNECT_TIMEOUT,
               "status healthy after the reconnect", interval=1)


@pytest.mark.integration
def test_a_full_disk_and_a_read_only_state_dir_do_not_end_a_detached_runtime(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = PORTS.take()
    with small_tmpfs(isolated.state) as state_dir:
        profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
        result = cli(profiles, "up", "sb", "--detach", "--json", timeout=UP_TIMEOUT)
        assert result.returncode == 0, describe(result)
        supervisor = json.loads(result.stdout)["pid"]
        server = remote_server(box, port)
        log = state_dir / "remote-runtime" / "logs" / "sb.log"

        # The disk is full: the supervisor can neither log nor record. (tmpfs gives space
        # by the page: end the log on a page boundary so its next line needs a new one.)
        with log.open("a") as pad:
            pad.write("#" * (-(log.stat().st_size + 1) % 4096) + "\n")
        filler = fill(state_dir)
        cut_and_wait_healthy(box, profiles)
        filler.unlink()
        with read_only(state_dir):  # a read-only view: new files cannot be made there
            cut_and_wait_healthy(box, profiles)
        cut_and_wait_healthy(box, profiles)  # and writable again
        assert alive(supervisor), "the supervisor died"
        assert remote_server(box, port) == server, "the remote server was restarted"
        text = log.read_text()
        lost = [line for line in text.splitlines() if "could not be written since" in line]
        assert len(lost) == 1, text  # said once, when the log could be written again
        assert "No space left on device" in lost[0] and "the runtime kept running" in lost[0]
        unrecorded = [line for line in text.splitlines()
                      if "could not update the state record" in line]
        assert unrecorded and "Read-only file system" in unrecorded[-1], text
        # The first reconnect's lines were lost with the disk full; the count went on.
        assert "reconnected (reconnect #1)" not in text and "reconnect #3" in text, text

        result = cli(profiles, "down", "sb", timeout=120)
        assert result.returncode == 0, describe(result)
        assert not wait_gone([supervisor, server]), "something of the runtime is still running"
        assert port_closed(port)
        assert isolated.runtime_records == []


@pytest.mark.integration
def test_a_storm_of_signals_never_skips_the_teardown(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    """SIGTERM after SIGTERM, as fast as they can be sent: the first stops `up`, every
    later one must find a handler (not Python's default, which ends the process at
    once) until teardown is over."""
    box = clean_remote
    port = PORTS.take()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    up = UpProcess.start("sb", "--profiles", str(profiles))
    try:
        up.wait_ready(UP_TIMEOUT)
        server = remote_server(box, port)
        storm(up.proc)
        status = up.wait(60)
    finally:
        up.kill()
    # Killed, if at all, by a signal after teardown (the handlers are restored at exit).
    assert status in (0, -signal.SIGTERM), up.describe()
    assert f"stopped the remote Jupyter server (pid {server})" in up.stderr, up.describe()
    assert "closed the SSH connection" in up.stderr, up.describe()
    assert up.stderr.count("tearing down, please wait") <= 1, "the notice is said once"
    assert not wait_gone([server])
    assert port_closed(port)
    assert isolated.runtime_records == []


@pytest.mark.integration
def test_a_signal_storm_during_run_still_tears_down(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = PORTS.take()
    profiles = profiles_for(tmp_path, box, teardown, sb={"port": port})
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        cli_argv("run", "sb", "--profiles", str(profiles), "--", "sh", "-c",
                 f"touch {ready}; exec sleep 300"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=cli_env(), start_new_session=True)
    try:
        wait_until(ready.exists, UP_TIMEOUT, "the command to start", interval=0.2)
        server = remote_server(box, port)
        storm(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode in (130, -signal.SIGTERM), err
    assert f"stopped the remote Jupyter server (pid {server})" in err, err
    assert "closed the SSH connection" in err, err
    assert not wait_gone([server])
    assert port_closed(port)
    assert isolated.runtime_records == []
