"""Small helpers shared by the sandbox modules: the error type and a deadline loop."""

from __future__ import annotations

import shutil
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
