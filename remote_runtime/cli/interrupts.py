"""Signals for processes that hold a runtime in the foreground (`up`, `run`).

SIGTERM and SIGHUP end a foreground runtime exactly as Ctrl-C does; during
teardown every such signal is absorbed, so a second Ctrl-C cannot leave a
remote server running.
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
