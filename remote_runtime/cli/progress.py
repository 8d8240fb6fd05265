"""Progress on stderr: one line per message; the counted steps of a task (an install,
`options.Step`) as a single bar that updates in place.

On a terminal the bar redraws itself; elsewhere (a log, CI) rich prints it once,
finished, so a build leaves one line there instead of one per package. Like every
message of the CLI, nothing here is parsed as markup (`render.text`).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..options import Step
from .render import text


class ProgressView:
    """A progress callback (`options.Progress`) that draws on `console` (or on what a
    function returns, looked up at each message: the CLI's `err` can be swapped)."""

    def __init__(self, console: Console | Callable[[], Console]) -> None:
        self._console = console if callable(console) else (lambda: console)
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._name = ""

    def __call__(self, message: str) -> None:
        if isinstance(message, Step):
            self._step(message)
            return
        self.finish()
        self._console().print(text(("-", "dim"), f" {message}"))

    def _step(self, step: Step) -> None:
        if self._bar is None or step.task != self._name:
            self.finish()
            self._bar = Progress(
                TextColumn("-", style="dim"),
                TextColumn("{task.description}", markup=False),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}", style="dim", markup=False),
                console=self._console(),
                refresh_per_second=4,
            )
            self._bar.start()
            self._task = self._bar.add_task(step.task, total=step.total, detail="")
            self._name = step.task
        assert self._task is not None
        self._bar.update(self._task, completed=step.done, total=step.total,
                         detail="" if step.finished else step.detail)
        if step.finished:
            self.finish()

    def finish(self) -> None:
        """End the bar (if one is drawn) where it stands; safe to call any time."""
        bar, self._bar, self._task, self._name = self._bar, None, None, ""
        if bar is not None:
            bar.stop()
