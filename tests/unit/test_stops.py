"""Stop requests (remote_runtime/stops.py): how `down` asks an owner to tear down on every OS."""

from __future__ import annotations

import os
import threading
import time

from support.env import Isolated

from remote_runtime import state, stops


def test_a_request_is_taken_once_by_its_owner_only(isolated: Isolated) -> None:
    assert not stops.take("sb", os.getpid())
    stops.request("sb", os.getpid())
    path = state.runtimes_dir() / "sb.stop"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert not stops.take("sb", os.getpid() + 1)  # another owner's (an earlier run's)
    assert stops.pending("sb")
    assert stops.take("sb", os.getpid())
    assert not stops.pending("sb") and not stops.take("sb", os.getpid())


def test_withdraw_and_wait_taken(isolated: Isolated) -> None:
    stops.request("sb", 12345)
    started = time.monotonic()
    assert not stops.wait_taken("sb", 0.3)
    assert time.monotonic() - started >= 0.3
    stops.withdraw("sb")
    stops.withdraw("sb")  # nothing left: no error
    assert stops.wait_taken("sb", 0.1)
    assert isolated.state_files == []


def test_a_garbled_request_is_not_taken(isolated: Isolated) -> None:
    (state.runtimes_dir() / "sb.stop").write_text("{not json")
    assert not stops.take("sb", os.getpid())


def test_the_watcher_calls_back_once_and_closes(isolated: Isolated) -> None:
    calls: list[float] = []
    asked = threading.Event()

    def on_request() -> None:
        calls.append(time.monotonic())
        asked.set()

    with stops.Watcher("sb", os.getpid(), on_request, poll=0.05) as watcher:
        stops.request("sb", os.getpid() + 1)  # not ours: ignored
        time.sleep(0.2)
        assert not asked.is_set()
        stops.request("sb", os.getpid())
        sent = time.monotonic()
        assert stops.wait_taken("sb", 5) and asked.wait(5)
        assert calls[0] - sent < 2
    assert watcher._thread is None and len(calls) == 1
    assert not stops.pending("sb")


def test_a_closed_watcher_takes_nothing(isolated: Isolated) -> None:
    with stops.Watcher("sb", os.getpid(), lambda: None, poll=0.05):
        pass
    stops.request("sb", os.getpid())
    time.sleep(0.2)
    assert stops.pending("sb")
