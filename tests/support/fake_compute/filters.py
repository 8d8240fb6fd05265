"""The part of the Compute API's list `filter` syntax that clients of it use here:
`field = "value"` and `field != value` comparisons (dotted fields such as
`labels.created-by`), joined by AND, each optionally in parentheses."""

from __future__ import annotations

import re
from typing import Any

_CLAUSE = re.compile(r"""^\(?\s*([A-Za-z][\w.-]*)\s*(=|!=)\s*("(?:[^"\\]|\\.)*"|[^\s()]+)\s*\)?$""")


class FilterError(ValueError):
    pass


def _field(item: dict[str, Any], path: str) -> str | None:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if isinstance(value, dict | list) else str(value)


def matches(expression: str, item: dict[str, Any]) -> bool:
    """Does the resource `item` (its JSON) pass the filter `expression`?"""
    if not expression.strip():
        return True
    for clause in re.split(r"\s+AND\s+", expression.strip()):
        found = _CLAUSE.match(clause.strip())
        if found is None:
            raise FilterError(f"Invalid list filter expression '{expression}'.")
        name, op, raw = found.groups()
        wanted = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        actual = _field(item, name)
        if (actual == wanted) != (op == "="):
            return False
    return True
