"""Load and validate the profiles file.

The schema lives next to its one loader. Every problem names the file, the
line, the profile and the key, with a "did you mean" for misspelt keys; all
problems are collected so `profiles check` can show them at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .errors import ProfileError
from .yamlfile import Lines
from .yamlfile import read as read_yaml

ENV_VAR = "REMOTE_RUNTIME_PROFILES"
_LINE = re.compile(r" line (\d+):")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ENV_MODES = ("auto", "existing", "managed")
GCE_ADDRESS_MODES = ("auto", "external", "internal", "iap")
DEFAULT_JUPYTER_PORT = 8888
DEFAULT_LEASE_SECONDS = 300


@dataclass(frozen=True)
class SSHSettings:
    host: str
    port: int | None = None
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None


@dataclass(frozen=True)
class GCESettings:
    zone: str
    instance: str
    project: str | None = None
    user: str | None = None
    identity_file: Path | None = None
    address: str = "auto"
    start_if_stopped: bool = True
    stop_on_exit: bool = False
    ssh_port: int = 22
    proxy_command: str | None = None
    api_endpoint: str | None = None
    known_hosts: Path | None = None
    # Google account (email) whose OS Login profile gets the key; default: the
    # account of the credentials.
    account: str | None = None


@dataclass(frozen=True)
class JupyterSettings:
    port: int = DEFAULT_JUPYTER_PORT
    # True when the port was written in the profile: then a taken port is an
    # error instead of a reason to pick the next free one.
    port_explicit: bool = False
    command: str | None = None
    env: str = "auto"
    python: str = "python3"
    workdir: str = "~"
    bind_host: str = "127.0.0.1"
    lease_seconds: int = DEFAULT_LEASE_SECONDS


@dataclass(frozen=True)
class Profile:
    name: str
    source: Path
    jupyter: JupyterSettings
    ssh: SSHSettings | None = None
    gce: GCESettings | None = None

    @property
    def kind(self) -> str:
        return "gce" if self.gce is not None else "ssh"

    @property
    def target(self) -> str:
        """user@host:port, or project/zone/instance for GCE."""
        if self.ssh is not None:
            user = f"{self.ssh.user}@" if self.ssh.user else ""
            port = f":{self.ssh.port}" if self.ssh.port else ""
            return f"{user}{self.ssh.host}{port}"
        assert self.gce is not None
        project = self.gce.project or "(default project)"
        return f"{project}/{self.gce.zone}/{self.gce.instance}"


@dataclass
class ProfileSet:
    path: Path
    profiles: dict[str, Profile] = field(default_factory=dict)

    def get(self, name: str) -> Profile:
        if name in self.profiles:
            return self.profiles[name]
        close = difflib.get_close_matches(name, list(self.profiles), n=1)
        hint = f"did you mean '{close[0]}'?" if close else None
        known = ", ".join(sorted(self.profiles)) or "none"
        raise ProfileError(
            f"{self.path}: no profile named '{name}' (profiles: {known})", hint=hint
        )


# --- schema -----------------------------------------------------------------

Checker = Callable[[Any], Any]  # returns the converted value or raises ValueError


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


def _choice(*choices: str) -> Checker:
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


# key -> (checker, required)
SSH_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "host": (_str, True),
    "port": (_port, False),
    "user": (_str, False),
    "identity_file": (_path, False),
    "known_hosts": (_path, False),
    "proxy_jump": (_str, False),
    "proxy_command": (_str, False),
}
GCE_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "project": (_str, False),
    "zone": (_str, True),
    "instance": (_str, True),
    "user": (_str, False),
    "identity_file": (_path, False),
    "address": (_choice(*GCE_ADDRESS_MODES), False),
    "start_if_stopped": (_bool, False),
    "stop_on_exit": (_bool, False),
    "ssh_port": (_port, False),
    "proxy_command": (_str, False),
    "api_endpoint": (_url, False),
    "known_hosts": (_path, False),
    "account": (_str, False),
}
JUPYTER_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "port": (_port, False),
    "command": (_str, False),
    "env": (_choice(*ENV_MODES), False),
    "python": (_str, False),
    "workdir": (_str, False),
    "bind_host": (_loopback, False),
    "lease_seconds": (_lease, False),
}
PROFILE_KEYS = ("ssh", "gce", "jupyter", "description")


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
    ssh = _section(data["ssh"], SSH_SCHEMA, (*path, "ssh"), problems) if has_ssh else None
    gce = _section(data["gce"], GCE_SCHEMA, (*path, "gce"), problems) if has_gce else None
    if not ok or jupyter is None or (has_ssh and ssh is None) or (has_gce and gce is None):
        return None
    jupyter_settings = JupyterSettings(port_explicit="port" in jupyter, **jupyter)
    return Profile(
        name=name,
        source=source,
        jupyter=jupyter_settings,
        ssh=SSHSettings(**ssh) if ssh is not None else None,
        gce=GCESettings(**gce) if gce is not None else None,
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
