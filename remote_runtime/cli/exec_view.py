"""How `exec` looks: a progress bar per notebook on a terminal, a line per cell in a log
(CI), and a summary line per notebook at the end. Text as written (no markup), as
everything `render` prints."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .render import text

if TYPE_CHECKING:
    from ..notebooks import ExecReport, Job, NotebookResult

MARKS = {"ok": ("ok", "green"), "failed": ("FAILED", "red"),
         "interrupted": ("interrupted", "yellow"), "error": ("ERROR", "red"),
         "not run": ("not run", "dim")}


class ExecView:
    """An `exec` observer (notebooks.Observer's methods), safe to call from worker threads."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self.tasks: dict[int, Any] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> ExecView:
        if self.live:
            self.progress = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(),
                MofNCompleteColumn(),
                TextColumn("cells"), TimeElapsedColumn(), console=self.console,
                transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def started(self, job: Job, total: int) -> None:
        with self.lock:
            if self.progress is not None:
                self.tasks[id(job)] = self.progress.add_task(job.name, total=total)
            else:
                self.console.print(f"- {job.name}: kernel up, {total} cell(s) to run")
            for note in job.notes:
                self.console.print(text(("note:", "yellow"), f" {job.name}: {note}"))

    def cell_done(self, job: Job, executed: int, total: int) -> None:
        with self.lock:
            if self.progress is not None and id(job) in self.tasks:
                self.progress.update(self.tasks[id(job)], completed=executed)
            elif self.progress is None:
                self.console.print(f"- {job.name}: cell {executed}/{total} done")

    def finished(self, result: NotebookResult) -> None:
        with self.lock:
            task = self.tasks.get(id(result.job))
            if self.progress is not None and task is not None:
                self.progress.update(task, completed=result.executed)
                self.progress.stop_task(task)


def summary(out: Console, report: ExecReport) -> None:
    """A line per notebook: how it ended, and where its executed copy is."""
    for result in report.results:
        what = f"{result.executed}/{result.total} cells, {result.seconds:.1f}s"
        if result.status not in ("ok", "not run"):
            what = result.describe().split(": ", 1)[-1]
        out.print(text(MARKS.get(result.status, (result.status, "")),
                       f" {result.job.name}: {what} -> {result.job.output}"))
