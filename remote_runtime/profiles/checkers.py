"""Checkers of profile values: each returns the converted value or raises ValueError
with the reason shown to the user (`loader` says where). `Section` marks a nested
mapping with a schema of its own (e.g. `gce.create.accelerator`)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Section:
    """A nested mapping: its own schema (key -> (checker, required)), built by `build`."""

    schema: dict[str, tuple[Checker, bool]]
    build: Callable[..., Any]


# Returns the converted value or raises ValueError.
Convert = Callable[[Any], Any]
# What a schema key holds: a Convert, or a nested Section.
Checker = Convert | Section


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if "\n" in value or "\0" in value:
        raise ValueError("must be a single line")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a port number (1-65535), not {value!r}")
    if not 1 <= value <= 65535:
        raise ValueError(f"must be between 1 and 65535, not {value}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _path(value: Any) -> Path:
    return Path(os.path.expanduser(_str(value)))


def _choice(*choices: str) -> Convert:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return check


def _loopback(value: Any) -> str:
    text = _str(value)
    try:
        if ipaddress.ip_address(text).is_loopback:
            return text
    except ValueError:
        pass
    raise ValueError(f"must be a loopback address (127.0.0.0/8 or ::1), not {text!r}")


def _lease(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 10:
        raise ValueError(f"must be a whole number of seconds >= 10, not {value!r}")
    return value


def _url(value: Any) -> str:
    text = _str(value)
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValueError(f"must be an http(s):// URL, not {text!r}")
    return text


def _int_range(low: int, high: int, unit: str = "") -> Convert:
    """A whole number in [low, high]."""
    label = f" {unit}" if unit else ""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number{label} from {low} to {high}, not {value!r}")
        return value

    return check


def _number_at_least(low: float, unit: str) -> Convert:
    """A number (fractions allowed) >= low."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value < low:
            raise ValueError(f"must be a number of {unit} >= {low:g}, not {value!r}")
        return float(value)

    return check


def _mapping(key: Convert, value: Convert) -> Convert:
    """A mapping of single-line keys to values, each checked (YAML scalars become text)."""

    def check(data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            raise ValueError("must be a mapping of keys to values")
        result = {}
        for raw_key, raw_value in data.items():
            name = key(raw_key)
            text = raw_value if isinstance(raw_value, str) else (
                "" if raw_value is None else str(raw_value).lower()
                if isinstance(raw_value, bool) else str(raw_value))
            try:
                result[name] = value(text)
            except ValueError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
        return result

    return check


# A Docker image reference as Docker parses it: [registry[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)"
_IMAGE = re.compile(rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
                    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


def _image(value: Any) -> str:
    """`auto`, or a Docker image reference (a name, a pinned tag or digest)."""
    text = _str(value)
    if text != "auto" and not _IMAGE.match(text):
        raise ValueError(f"must be auto or a Docker image reference "
                         f"(REGISTRY/PATH[:TAG][@sha256:DIGEST]), not {text!r}")
    return text


def _shell_lines(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(
            isinstance(item, str) and item.strip() for item in items):
        raise ValueError("must be a list of shell lines (non-empty strings)")
    if any("\0" in item for item in items):
        raise ValueError("must not contain NUL characters")
    return tuple(items)


def _ask_yes_no(value: Any) -> str:
    # YAML reads a bare yes/no as a boolean.
    if value is True or value is False:
        return "yes" if value else "no"
    return str(_choice("ask", "yes", "no")(value))
