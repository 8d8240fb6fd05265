"""Signals for processes that hold a runtime in the foreground (`up`, `run`).

SIGTERM and SIGHUP end a foreground runtime exactly as Ctrl-C does; during
teardown every such signal is absorbed, so a second Ctrl-C cannot leave a
remote server running. `holding` keeps one handler for the whole command, so
there is no moment (between starting and tearing down) where a signal finds
Python's default and ends the process without teardown.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


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


def terminate_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """Inside: SIGTERM and SIGHUP raise KeyboardInterrupt, like Ctrl-C."""
    return _handled(STOPPING_SIGNALS, _raise_interrupt)


def shielded(notice: Callable[[], None]) -> contextlib.AbstractContextManager[None]:
    """Inside: SIGINT, SIGTERM and SIGHUP only call `notice`."""
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
def holding(notice: Callable[[], None]) -> Iterator[Holding]:
    """Inside: the first SIGINT, SIGTERM or SIGHUP raises KeyboardInterrupt; every later
    one, and every one after `shield()`, only calls `notice`.

    Raised once at most, the interrupt can always be caught by a handler around the
    code that shields (``try: try: ... finally: shield() except KeyboardInterrupt``),
    and nothing after that can be interrupted: teardown then runs to the end.
    """
    state = Holding(notice)
    with _handled((signal.SIGINT, *STOPPING_SIGNALS), state.handle):
        yield state
