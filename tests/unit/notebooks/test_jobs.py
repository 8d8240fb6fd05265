"""What `exec` plans before a runtime comes up: bad input is one usage line."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from remote_runtime.errors import ExitCode, UsageError
from remote_runtime.notebooks import plan


def notebook(path: Path, *sources: str) -> Path:
    cells = [new_code_cell(s) for s in sources]
    for cell in cells:
        cell.outputs = [new_output("stream", name="stdout", text="old output\n")]
        cell.execution_count = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), path)
    return path


def usage(paths: list[Path], out_dir: Path | None = None) -> str:
    with pytest.raises(UsageError) as err:
        plan(paths, out_dir, {})
    assert err.value.exit_code == ExitCode.USAGE and "\n" not in err.value.message
    return err.value.message


def test_outputs_beside_the_inputs_or_in_out_dir(tmp_path: Path) -> None:
    a = notebook(tmp_path / "a.ipynb", "1", "", "x = 2")
    (job,) = plan([a], None, {})
    assert job.output == tmp_path / "a.executed.ipynb"
    assert job.code_cells == 2  # the blank cell is not run
    assert all(c.outputs == [] and c.execution_count is None for c in job.notebook.cells)
    (job,) = plan([a], tmp_path / "out" / "deep", {"p": 1})
    assert job.output == tmp_path / "out" / "deep" / "a.ipynb" and job.output.parent.is_dir()
    assert job.notebook.cells[0].source == "# Parameters\np = 1\n"


def test_bad_inputs(tmp_path: Path) -> None:
    assert usage([tmp_path / "missing.ipynb"]) == f"{tmp_path / 'missing.ipynb'}: no such notebook"
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert usage([broken]).startswith(f"{broken}: not a valid notebook (")
    wrong = tmp_path / "wrong.ipynb"
    wrong.write_text('{"cells": 3, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}')
    assert usage([wrong]).startswith(f"{wrong}: not a valid notebook (")
    a = notebook(tmp_path / "x" / "a.ipynb", "1")
    b = notebook(tmp_path / "y" / "a.ipynb", "2")
    assert "would both be written to" in usage([a, b], tmp_path / "out")
    assert usage([a], tmp_path / "x") == f"{a}: the executed notebook would overwrite it"
    (tmp_path / "file").write_text("")
    assert usage([a], tmp_path / "file") == f"-o {tmp_path / 'file'}: not a directory"
    assert usage([]) == "give at least one notebook"
