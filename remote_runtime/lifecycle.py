"""One pattern for everything that is started and must be closed.

A `Closing` closes when a `with` block ends. A `Resource` also starts when
the block enters it (unless it was started already). If starting fails, what was acquired
so far is closed before the error leaves `__enter__` (a `with` statement would
not call `__exit__` then). `close()` is the one shutdown verb: idempotent, and
safe to call on a resource that never started.

Something started in phases keeps an `UndoStack`: each phase that acquires a
resource pushes the `step` that releases it, and closing unwinds the stack.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from .errors import RemoteRuntimeError


class Closing:
    """Base class of whatever must be closed: leaving a `with` block calls `close()`."""

    def close(self) -> Any:
        """Release everything; must be idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Resource(Closing):
    """Base class of what is started and closed: entering starts it (once), leaving closes it.

    Subclasses implement `start()`, which sets `_started`, and `close()`.
    """

    _started: bool = False

    def start(self) -> Any:
        """Acquire what the resource holds (nothing by default)."""
        self._started = True

    def __enter__(self) -> Self:
        if not self._started:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self


# An undo step: runs one teardown action and returns the lines saying what it did.
Undo = Callable[[], list[str]]


def step(label: str, action: Callable[[], object]) -> Undo:
    """An undo step reported as `label` (plus what `action` returns, when it is text).

    A failure is reported in the line, never raised: teardown goes on whatever failed.
    """

    def run() -> list[str]:
        try:
            result = action()
        except RemoteRuntimeError as exc:
            result = f"failed ({exc.message})"
        except Exception as exc:  # noqa: BLE001 - teardown must go on whatever failed
            result = f"failed ({type(exc).__name__}: {exc})"
        return [f"{label}: {result}" if isinstance(result, str) and result else label]

    return run


class UndoStack:
    """What a start acquired, undone in reverse (pre-commit's ExitStack, with a report)."""

    def __init__(self) -> None:
        self._steps: list[Undo] = []
        self._lock = threading.Lock()

    def push(self, undo: Undo) -> None:
        with self._lock:
            self._steps.append(undo)

    def unwind(self) -> list[str]:
        """Run every step, last pushed first; return what they said."""
        done: list[str] = []
        while True:
            with self._lock:
                if not self._steps:
                    return done
                undo = self._steps.pop()
            done.extend(undo())
