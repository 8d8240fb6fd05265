"""Progress on stderr: one line per message; the counted steps of a task (an install,
`options.Step`) as a single bar that updates in place.

On a terminal the bar redraws itself; elsewhere (a log, CI) rich prints it once,
finished, so a build leaves one line there instead of one per package.
"""

from __future__ import annotations

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


class ProgressView:
    """A progress callback (`options.Progress`) that draws on `console`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._name = ""

    def __call__(self, message: str) -> None:
        if isinstance(message, Step):
            self._step(message)
            return
        self.finish()
        self.console.print(f"[dim]-[/dim] {message}", markup=True, highlight=False)

    def _step(self, step: Step) -> None:
        if self._bar is None or step.task != self._name:
            self.finish()
            self._bar = Progress(
                TextColumn("[dim]-[/dim] {task.description}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("[dim]{task.fields[detail]}[/dim]"),
                console=self.console,
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
