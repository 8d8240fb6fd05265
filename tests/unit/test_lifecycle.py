"""`lifecycle`: start on enter, close on exit (also when starting fails), undo in reverse."""

from __future__ import annotations

import pytest

from remote_runtime.errors import SSHError
from remote_runtime.lifecycle import Closing, Resource, UndoStack, step


class Recorder(Resource):
    def __init__(self, fail: bool = False) -> None:
        self.events: list[str] = []
        self.fail = fail

    def start(self) -> None:
        self._started = True
        self.events.append("start")
        if self.fail:
            raise RuntimeError("boom")

    def close(self) -> None:
        self.events.append("close")


def test_a_resource_starts_on_enter_and_closes_on_exit() -> None:
    with Recorder() as resource:
        assert resource.events == ["start"]
    assert resource.events == ["start", "close"]


def test_a_started_resource_is_not_started_again() -> None:
    resource = Recorder()
    resource.start()
    with resource:
        pass
    assert resource.events == ["start", "close"]


def test_a_failed_start_closes_before_the_error_leaves() -> None:
    resource = Recorder(fail=True)
    with pytest.raises(RuntimeError, match="boom"), resource:
        raise AssertionError("the block must not run")
    assert resource.events == ["start", "close"]


def test_closing_only_closes() -> None:
    closed = []

    class Thing(Closing):
        def close(self) -> None:
            closed.append(True)

    with Thing():
        assert closed == []
    assert closed == [True]


def test_undo_runs_in_reverse_and_reports_every_step() -> None:
    order: list[str] = []
    stack = UndoStack()
    stack.push(step("first", lambda: order.append("first")))
    stack.push(step("second", lambda: "said something"))
    stack.push(lambda: ["raw line"])
    assert stack.unwind() == ["raw line", "second: said something", "first"]
    assert order == ["first"]
    assert stack.unwind() == []  # each step runs once


def test_a_failing_step_is_reported_and_the_rest_still_run() -> None:
    ran: list[str] = []

    def broken() -> None:
        raise SSHError("connection lost")

    def crashing() -> None:
        raise ValueError("bad")

    stack = UndoStack()
    stack.push(step("last", lambda: ran.append("last")))
    stack.push(step("crashes", crashing))
    stack.push(step("breaks", broken))
    assert stack.unwind() == [
        "breaks: failed (connection lost)",
        "crashes: failed (ValueError: bad)",
        "last",
    ]
    assert ran == ["last"]
