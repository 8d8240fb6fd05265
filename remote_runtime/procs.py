"""Local processes: identity, liveness, waiting for an exit, terminate-then-kill.

The one home of process handling on the laptop side (the remote agent, which
must stay stdlib-only, has its own). Goes through psutil, not /proc, so the
same code answers on Linux, macOS and Windows; never `os.kill(pid, 0)`, which
on Windows would end the process it asks about.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from typing import Any

import psutil

POLL = 0.1
WINDOWS = sys.platform == "win32"


def stopping_signals(module: Any = signal) -> tuple[signal.Signals, ...]:
    """The signals besides SIGINT that ask a program to end, where the OS has them:
    SIGTERM and SIGHUP on POSIX; SIGBREAK (Ctrl-Break) on Windows. Windows' SIGTERM can
    be handled but nothing ever sends it. `module` is the signal module, or a stand-in
    in tests."""
    names = ("SIGTERM", "SIGHUP", "SIGBREAK")
    return tuple(getattr(module, name) for name in names if hasattr(module, name))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (dead for our purposes)."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; it is only not ours to look at


def start_time(pid: int) -> float | None:
    """When `pid` started (epoch seconds); None where it cannot be known."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def started_since_boot(pid: int) -> float | None:
    """When `pid` started, in seconds since boot; None where it cannot be known.

    Unlike `start_time`, this does not move when the wall clock is stepped (both
    psutil values move together), so it identifies a process across clock changes.
    """
    try:
        return float(psutil.Process(pid).create_time()) - float(psutil.boot_time())
    except (psutil.Error, OSError):
        return None


def cmdline(pid: int) -> list[str]:
    """The command line of `pid`; empty when it is gone or not readable."""
    try:
        return list(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return []


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` is no longer alive; False if it still is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def terminate(pid: int) -> bool:
    """Ask `pid` to stop (SIGTERM; TerminateProcess on Windows). False if it is not there."""
    try:
        psutil.Process(pid).terminate()
    except psutil.NoSuchProcess:
        return False
    return True


def kill(pid: int) -> None:
    """Stop `pid` for good (SIGKILL); nothing if it is gone."""
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).kill()


def stop_pid(pid: int, *, timeout: float, kill_timeout: float = 5.0) -> bool:
    """Terminate `pid`, wait up to `timeout`, then kill it; True if it ended without a kill."""
    if not terminate(pid):
        return True
    if wait_gone(pid, timeout):
        return True
    kill(pid)
    wait_gone(pid, kill_timeout)
    return False


def stop_child(proc: subprocess.Popen[bytes] | subprocess.Popen[str], *,
               timeout: float = 5.0, windows: bool = WINDOWS) -> bool:
    """Terminate a child we started, wait (reaping it), then kill; True if it ended by itself
    or on the terminate.

    On Windows terminating is TerminateProcess, which ends only that process: a child
    started through a batch file (`gcloud.cmd` runs cmd.exe, which runs Python) would
    leave its own children running, so they are ended too.
    """
    if proc.poll() is not None:
        return True
    descendants = _descendants(proc.pid) if windows else []
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
        ended = True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
        ended = False
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    return ended


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []
