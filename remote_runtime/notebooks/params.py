"""Parameters for a notebook, as papermill takes and injects them.

`-p key=value`: the value is typed as papermill's CLI types it (`True`, `False`,
`None`, an int, a float, else a string). Injection follows papermill: a new code
cell tagged `injected-parameters`, written as Python assignments under a
`# Parameters` comment, goes right after the first cell tagged `parameters`
(replacing an earlier injected cell), or at the top when there is none.
"""

from __future__ import annotations

import json
import keyword
import math
from typing import Any

import nbformat

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
COMMENT = "# Parameters"


def parse(items: list[str]) -> dict[str, Any]:
    """`key=value` strings to a mapping; ValueError names the bad one."""
    parameters: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier() or keyword.iskeyword(key):
            raise ValueError(f"-p {item!r}: expected NAME=VALUE with a Python name")
        parameters[key] = typed(raw)
    return parameters


def typed(raw: str) -> Any:
    """papermill's `_resolve_type`: True, False, None, int, float, else the string."""
    constants = {"True": True, "False": False, "None": None}
    if raw in constants:
        return constants[raw]
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def source(parameters: dict[str, Any]) -> str:
    """The injected cell's code (papermill's PythonTranslator, for these value types)."""
    lines = [COMMENT]
    for name, value in parameters.items():
        if isinstance(value, str):
            # A JSON string literal is a valid Python one (same escapes, double quotes).
            text = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, float) and not math.isfinite(value):
            text = f"float('{value}')"
        else:
            text = repr(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"


def _first_tagged(cells: list[Any], tag: str) -> int:
    for index, cell in enumerate(cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return index
    return -1


def inject(notebook: Any, parameters: dict[str, Any]) -> str | None:
    """Add the parameters cell to `notebook` (in place); a note when it went on top."""
    if not parameters:
        return None
    cell = nbformat.v4.new_code_cell(source=source(parameters))
    cell.metadata["tags"] = [INJECTED_TAG]
    cells = notebook.cells
    injected = _first_tagged(cells, INJECTED_TAG)
    tagged = _first_tagged(cells, PARAMETERS_TAG)
    note = None
    if injected >= 0:
        cells[injected] = cell
    elif tagged >= 0:
        cells.insert(tagged + 1, cell)
    else:
        cells.insert(0, cell)
        note = f"no cell tagged '{PARAMETERS_TAG}': the parameters were injected at the top"
    return note
