"""Stop requests: how `down` asks the process that owns a runtime to tear it down.

A signal cannot do that everywhere: Windows has no SIGTERM to catch (`TerminateProcess`
ends a process at once, skipping every `finally`), and a detached supervisor there
has no console to receive a Ctrl-Break. A file can: `down` writes `NAME.stop` next to
the runtime's record, naming the owner's pid; the owner's `Watcher` sees it within
`POLL` seconds, deletes it (that is the acknowledgement `down` waits for) and starts
the same teardown as Ctrl-C. The same path runs on every OS, so Linux tests exercise
the one Windows depends on.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import state
from .lifecycle import Resource

POLL = 0.25


def _path(name: str) -> Path:
    return state.runtimes_dir() / f"{name}.stop"


def request(name: str, pid: int) -> None:
    """Ask process `pid`, the owner of runtime `name`, to tear it down."""
    path = _path(name)
    with state.locked():
        state.write_private(path, json.dumps({"pid": pid, "at": time.time()}))


def withdraw(name: str) -> None:
    """Remove a request nobody took (its owner is gone, or `down` gave up on it)."""
    with state.locked(), contextlib.suppress(FileNotFoundError):
        _path(name).unlink()


def pending(name: str) -> bool:
    return _path(name).exists()


def wait_taken(name: str, timeout: float) -> bool:
    """Wait until the owner takes the request; False if it is still there after `timeout`."""
    deadline = time.monotonic() + timeout
    while pending(name):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL / 2)
    return True


def take(name: str, pid: int) -> bool:
    """True (and the request removed) if there is a request for runtime `name` owned by `pid`."""
    path = _path(name)
    if not path.exists():  # the common case, checked without the lock
        return False
    with state.locked():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict) or data.get("pid") != pid:
            return False  # another owner's (an earlier run of this name); `down` removes it
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return True


class Watcher(Resource):
    """A thread that calls `on_request()` once when runtime `name`, owned by `pid`, is asked
    to stop. Started by entering it; `close()` stops and joins the thread."""

    def __init__(self, name: str, pid: int, on_request: Callable[[], None],
                 poll: float = POLL) -> None:
        self.name, self.pid, self.on_request, self.poll = name, pid, on_request, poll
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._started = True
        self._thread = threading.Thread(target=self._run, name=f"stop-watcher-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.wait(self.poll):
            try:
                taken = take(self.name, self.pid)
            except Exception:  # noqa: BLE001, S112 - a bad state dir must not end the watcher
                continue
            if taken:
                self.on_request()
                return

    def close(self) -> None:
        self._closed.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
