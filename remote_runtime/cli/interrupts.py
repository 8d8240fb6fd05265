"""Signals and stop requests for processes that hold a runtime in the foreground (`up`, `run`).

Ctrl-C, and whatever else each OS sends to end a terminal program, end a
foreground runtime the same way: SIGTERM and SIGHUP on POSIX; Ctrl-Break
(SIGBREAK) on Windows. (Closing a Windows console also raises SIGBREAK, but
the system ends the process before Python's handler runs; the remote server
then stops itself when its SSH connection drops.)
A stop request from `down` in another terminal (`stops`, the one way that works
on every OS) does too. During teardown every such signal is absorbed, so a
second Ctrl-C cannot leave a remote server running. `holding` keeps one handler
for the whole command, so there is no moment (between starting and tearing
down) where a signal finds Python's default and ends the process without
teardown.
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
def _stop_requests(name: str | None) -> Iterator[None]:
    """A stop request from `down` for runtime `name` owned by this process interrupts the
    main thread as Ctrl-C does (interrupt_main runs the SIGINT handler there)."""
    if name is None:
        yield
        return
    with stops.Watcher(name, os.getpid(), _thread.interrupt_main):
        yield


@contextlib.contextmanager
def terminate_as_interrupt(name: str | None = None) -> Iterator[None]:
    """Inside: the stopping signals raise KeyboardInterrupt, like Ctrl-C; so does a stop
    request from `down` for runtime `name` owned by this process."""
    with _handled(STOPPING_SIGNALS, _raise_interrupt), _stop_requests(name):
        yield


def shielded(notice: Callable[[], None]) -> contextlib.AbstractContextManager[None]:
    """Inside: SIGINT and the stopping signals only call `notice`."""
    return _handled((signal.SIGINT, *STOPPING_SIGNALS), lambda signum, frame: notice())


class Holding:
    """The signal state of a command that holds a runtime: see `holding`."""

    def __init__(self, notice: Callable[[], None]) -> None:
        self.notice = notice
        self.armed = True

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False  # one KeyboardInterrupt at most, wherever it lands
            raise KeyboardInterrupt
        self.notice()

    def shield(self) -> None:
        """From now on every signal only calls `notice` (teardown has begun)."""
        self.armed = False


@contextlib.contextmanager
def holding(notice: Callable[[], None], name: str | None = None) -> Iterator[Holding]:
    """Inside: the first SIGINT or stopping signal (or stop request for runtime `name`)
    raises KeyboardInterrupt; every later one, and every one after `shield()`, only
    calls `notice`.

    Raised once at most, the interrupt can always be caught by a handler around the
    code that shields (``try: try: ... finally: shield() except KeyboardInterrupt``),
    and nothing after that can be interrupted: teardown then runs to the end.
    """
    state = Holding(notice)
    with _handled((signal.SIGINT, *STOPPING_SIGNALS), state.handle), _stop_requests(name):
        yield state
