"""The profiles schema: settings as typed values, and the checker of every key.

Each section is a mapping of key -> (checker, required); a checker returns the
converted value or raises ValueError with the reason shown to the user.
`loader` applies them and says where each problem is.
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

from ..errors import ProfileError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ENV_MODES = ("auto", "existing", "managed")
GCE_ADDRESS_MODES = ("auto", "external", "internal", "iap")
INSTALL_MODES = ("ask", "yes", "no")
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
class KernelSettings:
    """The kernel Colab starts: which remote Python, prepared how."""

    python: str = "auto"  # auto, or a remote path (~ is the remote home)
    setup: tuple[str, ...] = ()  # shell lines run by a POSIX sh before the kernel starts
    install_ipykernel: str = "ask"  # ask | yes | no, when that Python lacks ipykernel


@dataclass(frozen=True)
class Profile:
    name: str
    source: Path
    jupyter: JupyterSettings
    ssh: SSHSettings | None = None
    gce: GCESettings | None = None
    kernel: KernelSettings = field(default_factory=KernelSettings)

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
    return _choice(*INSTALL_MODES)(value)


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
KERNEL_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "python": (_str, False),
    "setup": (_shell_lines, False),
    "install_ipykernel": (_ask_yes_no, False),
}
PROFILE_KEYS = ("ssh", "gce", "jupyter", "kernel", "description")
