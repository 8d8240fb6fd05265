"""What `exec` will run, decided before any runtime comes up: each notebook read and
checked, its parameters injected, its earlier outputs cleared, and where the executed
copy goes. Bad input is one UsageError line, so no VM is created for a typo."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ..errors import UsageError
from . import params

SKIP_TAG = "skip-execution"  # as nbclient: a code cell tagged so is not run
OUTPUT_SUFFIX = ".executed.ipynb"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    """Terminal colours out (kernels colour their tracebacks)."""
    return _ANSI.sub("", text)


@dataclass
class Job:
    source: Path
    output: Path
    notebook: Any  # nbformat.NotebookNode, executed in place
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def code_cells(self) -> int:
        """The cells nbclient will run: code, not blank, not tagged skip-execution."""
        return sum(1 for cell in self.notebook.cells
                   if cell.cell_type == "code" and cell.source.strip()
                   and SKIP_TAG not in cell.get("metadata", {}).get("tags", []))

    def write(self, metadata: dict[str, Any]) -> None:
        """Write the notebook as it is now (atomically), with `metadata` under
        `remote_runtime` in the notebook's metadata."""
        self.notebook.metadata["remote_runtime"] = metadata
        tmp = self.output.with_name(f".{self.output.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                nbformat.write(self.notebook, handle)
            tmp.replace(self.output)
        finally:
            tmp.unlink(missing_ok=True)


def output_for(source: Path, out_dir: Path | None) -> Path:
    """OUT_DIR/NAME.ipynb, or NAME.executed.ipynb beside the input."""
    if out_dir is not None:
        return out_dir / source.name
    return source.with_name(source.name.removesuffix(".ipynb") + OUTPUT_SUFFIX)


def read(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"{path}: no such notebook")
    try:
        notebook = nbformat.read(str(path), as_version=4)
        nbformat.validate(notebook)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{path}: not a valid notebook ({first[:200]})") from None
    return notebook


def _clear(notebook: Any) -> None:
    """Start from a clean slate, as papermill does: what the file shows is what ran."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)


def plan(paths: list[Path], out_dir: Path | None, parameters: dict[str, Any]) -> list[Job]:
    """Read, check and prepare every notebook; UsageError for the first problem."""
    if not paths:
        raise UsageError("give at least one notebook")
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"-o {out_dir}: not a directory")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"-o {out_dir}: cannot create it ({exc.strerror})") from None
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for path in paths:
        notebook = read(path)
        output = output_for(path, out_dir)
        if output.resolve() == path.resolve():
            raise UsageError(f"{path}: the executed notebook would overwrite it",
                             hint="write it elsewhere with -o OUT_DIR")
        if output.resolve() in seen:
            raise UsageError(f"{path} and {seen[output.resolve()]} would both be written to "
                             f"{output}", hint="run them with different -o directories")
        seen[output.resolve()] = path
        _clear(notebook)
        note = params.inject(notebook, parameters)
        jobs.append(Job(path, output, notebook, dict(parameters), [note] if note else []))
    return jobs
