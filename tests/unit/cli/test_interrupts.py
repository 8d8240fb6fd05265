"""Signals and stop requests for foreground runtimes (remote_runtime/cli/interrupts.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from support.env import Isolated

from remote_runtime import stops
from remote_runtime.cli import interrupts


def test_the_stopping_signals_here() -> None:
    assert interrupts.STOPPING_SIGNALS == (signal.SIGTERM, signal.SIGHUP)


def test_a_stopping_signal_is_an_interrupt_inside_and_not_after() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_a_stop_request_interrupts_the_main_thread(isolated: Isolated) -> None:
    """`down` from another terminal, on every OS: the request becomes a KeyboardInterrupt."""
    timer = threading.Timer(0.3, stops.request, ("sb", os.getpid()))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), interrupts.terminate_as_interrupt("sb"):
        timer.start()
        for _ in range(100):  # a wait loop in slices, as `up` and `run` wait
            time.sleep(0.1)
    assert time.monotonic() - started < 5
    assert not stops.pending("sb")  # taken: `down` sees the acknowledgement


def test_no_interrupt_after_the_block(isolated: Isolated) -> None:
    with interrupts.terminate_as_interrupt("sb"):
        pass
    stops.request("sb", os.getpid())
    time.sleep(0.6)
    assert stops.pending("sb")


def test_shielded_only_notices() -> None:
    noticed: list[int] = []
    with interrupts.shielded(lambda: noticed.append(1)):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    assert noticed == [1, 1]
