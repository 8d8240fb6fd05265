"""Signals and stop requests for processes that hold a runtime in the foreground (`up`, `run`).

Ctrl-C, and whatever else each OS sends to end a terminal program, end a
foreground runtime the same way: SIGTERM and SIGHUP on POSIX; Ctrl-Break
(SIGBREAK) on Windows. (Closing a Windows console also raises SIGBREAK, but
the system ends the process before Python's handler runs; the remote server
then stops itself when its SSH connection drops.)
A stop request from `down` in another terminal (`stops`, the one way that works
on every OS) does too. During teardown every such signal is absorbed, so a
second Ctrl-C cannot leave a remote server running.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

from .. import procs, stops

# Ctrl-C is SIGINT everywhere (KeyboardInterrupt by default); these are the others.
STOPPING_SIGNALS = procs.stopping_signals()


@contextlib.contextmanager
def _handled(signals: tuple[signal.Signals, ...],
             handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt(name: str | None = None) -> Iterator[None]:
    """Inside: the stopping signals raise KeyboardInterrupt, like Ctrl-C; so does a stop
    request from `down` for runtime `name` owned by this process."""
    with _handled(STOPPING_SIGNALS, _raise_interrupt):
        if name is None:
            yield
            return
        # interrupt_main() runs the SIGINT handler (KeyboardInterrupt) in the main thread.
        with stops.Watcher(name, os.getpid(), _thread.interrupt_main):
            yield


def shielded(notice: Callable[[], None]) -> contextlib.AbstractContextManager[None]:
    """Inside: SIGINT and the stopping signals only call `notice`."""
    return _handled((signal.SIGINT, *STOPPING_SIGNALS), lambda signum, frame: notice())
