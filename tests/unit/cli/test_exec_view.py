"""How `exec` shows its progress: bars on a terminal, a line per cell in a log, and a
summary line per notebook."""

from __future__ import annotations

import io
from pathlib import Path

from nbformat.v4 import new_code_cell, new_notebook
from rich.console import Console

from remote_runtime.cli.exec_view import ExecView, summary
from remote_runtime.notebooks import Job
from remote_runtime.notebooks.run import CellFailure, ExecReport, NotebookResult


def job(name: str) -> Job:
    notebook = new_notebook(cells=[new_code_cell("1"), new_code_cell("2")])
    return Job(Path(name), Path("out") / name, notebook, notes=["a note [not markup]"])


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    """As render.console() makes them (no markup), writing to a buffer."""
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=100, highlight=False,
                   markup=False, emoji=False), buffer


def test_a_progress_bar_per_notebook_on_a_terminal() -> None:
    term, buffer = console(terminal=True)
    first = job("a.ipynb")
    with ExecView(term) as view:
        view.started(first, 2)
        view.cell_done(first, 1, 2)
        view.cell_done(first, 2, 2)
        view.finished(NotebookResult(first, "ok", 2, 2))
    text = buffer.getvalue()
    assert "a.ipynb" in text and "2/2" in text and "a note [not markup]" in text


def test_a_line_per_cell_in_a_log() -> None:
    log, buffer = console(terminal=False)
    second = job("b.ipynb")
    with ExecView(log) as view:
        view.started(second, 2)
        view.cell_done(second, 1, 2)
    assert buffer.getvalue().splitlines() == [
        "- b.ipynb: kernel up, 2 cell(s) to run",
        "note: b.ipynb: a note [not markup]",
        "- b.ipynb: cell 1/2 done"]


def test_summary_names_the_failing_cell() -> None:
    out, buffer = console(terminal=False)
    a, b, c = job("a.ipynb"), job("b.ipynb"), job("c.ipynb")
    report = ExecReport("lab", "python3", [
        NotebookResult(a, "ok", 2, 2, 1.25),
        NotebookResult(b, "failed", 2, 2, 0.5, CellFailure(1, "KeyError", "'x'",
                                                          execution_count=2)),
        NotebookResult(c, "not run", 2)])
    summary(out, report)
    assert buffer.getvalue().splitlines() == [
        f"ok a.ipynb: 2/2 cells, 1.2s -> {Path('out/a.ipynb')}",
        f"FAILED b.ipynb: cell 2 (In [2]) raised KeyError: 'x' -> {Path('out/b.ipynb')}",
        f"not run c.ipynb: 0/2 cells, 0.0s -> {Path('out/c.ipynb')}"]
    error = report.error()
    assert error is not None and error.message == "b.ipynb: cell 2 (In [2]) raised KeyError: 'x'"
    assert error.exit_code == 11
