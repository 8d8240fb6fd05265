"""Read a YAML file keeping each key's line number.

Errors must say where (file and line), so the profiles file is composed into
nodes and built by hand; every problem is a one-line ProfileError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ProfileError


class Lines(dict[tuple[str, ...], int]):
    """Maps a key path (profile, section, key) to its 1-based line."""


def _construct(node: yaml.Node, lines: Lines, path: tuple[str, ...], source: Path) -> Any:
    if isinstance(node, yaml.MappingNode):
        # Resolve YAML merge keys (`<<: *defaults`) as the safe loader does; on a copy,
        # since an anchored node may be visited again through an alias.
        node = yaml.MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
        yaml.SafeLoader("").flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, lines, path, source)
            if not isinstance(key, str):
                raise ProfileError(
                    f"{source} line {key_node.start_mark.line + 1}: keys must be strings, "
                    f"not {key!r}"
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, lines, (*path, key), source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, lines, path, source) for item in node.value]
    # Scalars: let the safe constructor resolve ints, bools and nulls.
    return yaml.SafeLoader(b"").construct_object(node, deep=True)


def _refuse_duplicates(node: yaml.Node, source: Path, seen: set[int]) -> None:
    """YAML keeps the last of two equal keys silently; two profiles of one name (a
    copy-paste slip) would then lose one without a word. Refuse, naming both lines."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                line = key_node.start_mark.line + 1
                if key_node.value in first:
                    raise ProfileError(
                        f"{source} line {line}: duplicate key '{key_node.value}' "
                        f"(first on line {first[key_node.value]})"
                    )
                first[key_node.value] = line
            _refuse_duplicates(value_node, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicates(item, source, seen)


def read(source: Path) -> tuple[Any, Lines]:
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            f"{source}: profiles file not found",
            hint="copy profiles.example.yaml there, or pass --profiles PATH",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{source}: cannot read profiles file: {exc}") from None
    lines = Lines()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = None
        if node is not None:
            _refuse_duplicates(node, source, set())
            # Constructing can fail too (an unknown !tag, a bad !!timestamp): same message.
            data = _construct(node, lines, (), source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{source}{where}: malformed YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: malformed YAML: {exc}") from None
    return data, lines
