"""Signals and stop requests for foreground runtimes (remote_runtime/cli/interrupts.py),
sent for real to this process."""

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


def deliver(sig: int) -> None:
    """Send `sig` to ourselves; Python runs its handler at the next bytecode."""
    os.kill(os.getpid(), sig)
    time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_first_signal_interrupts_and_every_later_one_only_notices(sig: int) -> None:
    notices: list[int] = []
    before = signal.getsignal(signal.SIGTERM)
    with interrupts.holding(lambda: notices.append(1)) as signals:
        with pytest.raises(KeyboardInterrupt):
            deliver(sig)
        assert not signals.armed
        for _ in range(3):
            deliver(signal.SIGTERM)  # no default handler in between: nothing ends us
            deliver(signal.SIGINT)
    assert notices == [1] * 6
    assert signal.getsignal(signal.SIGTERM) == before  # restored when the command ends


def test_after_shield_no_signal_interrupts() -> None:
    notices: list[int] = []
    with interrupts.holding(lambda: notices.append(1)) as signals:
        signals.shield()
        deliver(signal.SIGTERM)
        deliver(signal.SIGHUP)
    assert notices == [1, 1]


def test_an_interrupt_right_at_the_shield_is_caught_by_the_outer_handler() -> None:
    """The pattern `up` uses: however the one interrupt lands, teardown runs after it."""
    torn_down = []
    with interrupts.holding(lambda: None) as signals:
        try:
            try:
                pass
            finally:
                deliver(signal.SIGTERM)  # lands in the finally, before shield()
                signals.shield()
        except KeyboardInterrupt:
            pass
        finally:
            deliver(signal.SIGTERM)  # absorbed: teardown is not cut short
            torn_down.append(True)
    assert torn_down == [True]
