"""Notebooks for `exec` tests, written with nbformat."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def write(path: Path, *cells: str | tuple[str, list[str]], markdown_first: bool = False) -> Path:
    """A notebook of code cells (a (source, tags) pair tags a cell)."""
    made = [new_markdown_cell("# test notebook")] if markdown_first else []
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        code = new_code_cell(source)
        if tags:
            code.metadata["tags"] = tags
        made.append(code)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=made, metadata={"kernelspec": {
        "name": "someone-elses-env", "display_name": "not on the runtime",
        "language": "python"}}), path)
    return path


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def outputs(cell: nbformat.NotebookNode) -> str:
    """A code cell's stream text and results, as one string."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(parts)
