"""Load and validate the profiles file.

The schema (`schema`) lives next to this, its one loader. Every problem names
the file, the line, the profile and the key, with a "did you mean" for
misspelt keys; all problems are collected so `profiles check` can show them
at once.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ProfileError
from .checkers import Section
from .gce import cross_check as gce_cross_check
from .schema import (
    GCE_SCHEMA,
    JUPYTER_SCHEMA,
    KERNEL_SCHEMA,
    NAME_RE,
    PROFILE_KEYS,
    SSH_SCHEMA,
    Checker,
    GCESettings,
    JupyterSettings,
    KernelSettings,
    Profile,
    ProfileSet,
    SSHSettings,
    jupyter_cross_check,
    kernel_cross_check,
)
from .yamlfile import Lines
from .yamlfile import read as read_yaml

ENV_VAR = "REMOTE_RUNTIME_PROFILES"
_LINE = re.compile(r" line (\d+):")


# --- validation ---------------------------------------------------------------


class _Problems:
    def __init__(self, source: Path, lines: Lines):
        self.source = source
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: tuple[str, ...], reason: str) -> None:
        line = None
        for depth in range(len(path), 0, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                break
        where = f" line {line}" if line else ""
        profile = f" profile '{path[1]}'" if len(path) > 1 else ""
        key = f" key '{'.'.join(path[2:])}'" if len(path) > 2 else ""
        label = f":{profile}{key}" if profile else ""
        self.items.append(f"{self.source}{where}{label}: {reason}")


def _section(
    data: Any,
    schema: dict[str, tuple[Checker, bool]],
    path: tuple[str, ...],
    problems: _Problems,
) -> dict[str, Any] | None:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.add(path, "must be a mapping of keys")
        return None
    values: dict[str, Any] = {}
    ok = True
    for key, raw in data.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.add((*path, key), f"unknown key{hint}")
            ok = False
            continue
        if raw is None:
            continue  # an explicit null means "use the default"
        checker, _required = schema[key]
        try:
            if isinstance(checker, Section):
                nested = _section(raw, checker.schema, (*path, key), problems)
                if nested is None:
                    ok = False
                    continue
                values[key] = checker.build(nested)
            else:
                values[key] = checker(raw)
        except ValueError as exc:
            problems.add((*path, key), str(exc))
            ok = False
    for key, (_checker, required) in schema.items():
        if required and data.get(key) is None:
            problems.add((*path, key), "is required")
            ok = False
    return values if ok else None


def _profile(name: str, data: Any, source: Path, problems: _Problems) -> Profile | None:
    path = ("profiles", name)
    if not NAME_RE.match(name):
        problems.add(path, "profile names use letters, digits, '.', '_' and '-' only")
        return None
    if not isinstance(data, dict):
        problems.add(path, "must be a mapping with an 'ssh' or a 'gce' section")
        return None
    ok = True
    for key in data:
        if key not in PROFILE_KEYS:
            close = difflib.get_close_matches(key, PROFILE_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.add((*path, key), f"unknown key{hint}")
            ok = False
    has_ssh, has_gce = data.get("ssh") is not None, data.get("gce") is not None
    if has_ssh == has_gce:
        problems.add(path, "needs exactly one target section: 'ssh' or 'gce'")
        ok = False
    jupyter = _section(data.get("jupyter"), JUPYTER_SCHEMA, (*path, "jupyter"), problems)
    for key, reason in jupyter_cross_check(jupyter) if jupyter is not None else ():
        problems.add((*path, "jupyter", key), reason)
        jupyter = None
    ssh = _section(data["ssh"], SSH_SCHEMA, (*path, "ssh"), problems) if has_ssh else None
    gce = _section(data["gce"], GCE_SCHEMA, (*path, "gce"), problems) if has_gce else None
    for key, reason in gce_cross_check(gce) if gce is not None else ():
        problems.add((*path, "gce", key), reason)
        gce = None
    kernel = _section(data.get("kernel"), KERNEL_SCHEMA, (*path, "kernel"), problems)
    for key, reason in kernel_cross_check(jupyter, kernel) if jupyter and kernel else ():
        problems.add((*path, "kernel", key), reason)
        kernel = None
    if not ok or jupyter is None or kernel is None or (has_ssh and ssh is None) or (
            has_gce and gce is None):
        return None
    jupyter_settings = JupyterSettings(port_explicit="port" in jupyter, **jupyter)
    return Profile(
        name=name,
        source=source,
        jupyter=jupyter_settings,
        ssh=SSHSettings(**ssh) if ssh is not None else None,
        gce=GCESettings(**gce) if gce is not None else None,
        kernel=KernelSettings(**kernel),
    )


def resolve_path(explicit: Path | str | None = None) -> Path:
    """--profiles PATH, then $REMOTE_RUNTIME_PROFILES, then the XDG config file."""
    if explicit:
        return Path(os.path.expanduser(str(explicit)))
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(os.path.expanduser(env))
    return paths.default_profiles_file()


def validate(source: Path) -> tuple[ProfileSet, list[str]]:
    """Load `source`; return the valid profiles and every problem found."""
    data, lines = read_yaml(source)
    problems = _Problems(source, lines)
    result = ProfileSet(path=source)
    if data is None:
        problems.items.append(f"{source}: file is empty (expected a 'profiles:' mapping)")
        return result, problems.items
    if not isinstance(data, dict) or "profiles" not in data:
        problems.items.append(f"{source}: expected a top-level 'profiles:' mapping")
        return result, problems.items
    for key in data:
        if key != "profiles":
            hint = " (did you mean 'profiles'?)" if difflib.get_close_matches(
                key, ["profiles"], n=1) else ""
            problems.add((key,), f"unknown top-level key '{key}'{hint}")
    profiles = data["profiles"]
    if not isinstance(profiles, dict):
        problems.add(("profiles",), "'profiles' must be a mapping of names to profiles")
        return result, problems.items
    for name, body in profiles.items():
        profile = _profile(str(name), body, source, problems)
        if profile is not None:
            result.profiles[profile.name] = profile
    # In file order, as an editor shows them (problems without a line stay first).
    problems.items.sort(key=lambda item: int(m.group(1)) if (m := _LINE.search(item)) else 0)
    return result, problems.items


def load(explicit: Path | str | None = None) -> ProfileSet:
    """Load and validate; raise ProfileError naming the first problem."""
    source = resolve_path(explicit)
    result, problems = validate(source)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ProfileError(
            problems[0] + more,
            hint="run 'remote-runtime profiles check' to see every problem",
            details="\n".join(problems[1:]) or None,
        )
    return result
