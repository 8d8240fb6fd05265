"""Parameters as papermill takes (`-p`, typed) and injects them (a tagged cell after the
`parameters` cell)."""

from __future__ import annotations

import math

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from remote_runtime.notebooks import params


@pytest.mark.parametrize(("raw", "value"), [
    ("True", True), ("False", False), ("None", None), ("12", 12), ("-3", -3), ("1_000", 1000),
    ("0.5", 0.5), ("1e-3", 0.001), ("true", "true"), ("fast run", "fast run"), ("", ""),
    ("a=b", "a=b"),
])
def test_values_are_typed_as_papermill_types_them(raw: str, value: object) -> None:
    assert params.typed(raw) == value and type(params.typed(raw)) is type(value)


def test_parse_keeps_the_first_equals_sign_and_refuses_bad_names() -> None:
    assert params.parse(["alpha=0.5", "expr=a=b", "name=x y"]) == {
        "alpha": 0.5, "expr": "a=b", "name": "x y"}
    for bad in ("novalue", "=1", "1x=2", "class=3", "a b=1"):
        with pytest.raises(ValueError, match="expected NAME=VALUE"):
            params.parse([bad])


def test_the_injected_source_is_python_that_gives_back_the_values() -> None:
    values = {"s": 'say "hi"\nback\\slash é', "i": 3, "f": 0.25, "b": False, "n": None,
              "inf": math.inf, "nan": math.nan}
    source = params.source(values)
    assert source.splitlines()[0] == "# Parameters"
    assert 's = "say \\"hi\\"\\nback\\\\slash é"' in source.splitlines()
    scope: dict[str, object] = {}
    exec(source, scope)  # what the kernel will run
    assert {k: scope[k] for k in values if k != "nan"} == {k: v for k, v in values.items()
                                                           if k != "nan"}
    assert math.isnan(scope["nan"])  # type: ignore[arg-type]


def _notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return new_notebook(cells=list(cells))


def _tagged(source: str, tag: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = [tag]
    return cell


def test_injected_after_the_parameters_cell() -> None:
    nb = _notebook(new_markdown_cell("# t"), _tagged("a = 1", "parameters"), new_code_cell("a"))
    assert params.inject(nb, {"a": 2}) is None
    assert [c.source for c in nb.cells] == ["# t", "a = 1", "# Parameters\na = 2\n", "a"]
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"]


def test_an_earlier_injected_cell_is_replaced() -> None:
    nb = _notebook(_tagged("a = 1", "parameters"), _tagged("# Parameters\na = 5\n",
                                                           "injected-parameters"),
                   new_code_cell("a"))
    params.inject(nb, {"a": 7})
    assert [c.source for c in nb.cells] == ["a = 1", "# Parameters\na = 7\n", "a"]


def test_without_a_parameters_cell_they_go_on_top_with_a_note() -> None:
    nb = _notebook(new_code_cell("print(a)"))
    note = params.inject(nb, {"a": 1})
    assert note == "no cell tagged 'parameters': the parameters were injected at the top"
    assert nb.cells[0].source == "# Parameters\na = 1\n"
    assert params.inject(_notebook(new_code_cell("x")), {}) is None
