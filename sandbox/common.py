"""Small helpers shared by the sandbox modules: the error type and a deadline loop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from remote_runtime.errors import RemoteRuntimeError


class SandboxError(RemoteRuntimeError):
    """The throwaway remote host could not be set up (missing tool, daemon did not start)."""


def find_binary(name: str, *fallbacks: str, hint: str) -> str:
    """Return the path of `name` on PATH (or the first existing fallback), else fail with `hint`."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if Path(candidate).is_file():
            return candidate
    raise SandboxError(f"{name} not found", hint=hint)


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.02) -> bool:
    """Call `check` until it returns True or `timeout` seconds pass; return its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def kill_and_wait(list_pids: Callable[[], list[int]], timeout: float = 2.0) -> None:
    """SIGTERM the processes `list_pids()` finds, wait, then SIGKILL the survivors."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = list_pids()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if wait_until(lambda: not list_pids(), timeout=timeout):
            return


def pids_with_env(key: str, value: str) -> list[int]:
    """PIDs of live processes whose environment holds key=value (zombies have none)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)
