"""Signals of `up` and `run` (remote_runtime/cli/interrupts.py), sent for real to this process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from remote_runtime.cli import interrupts


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
