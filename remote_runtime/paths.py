"""Config, state, cache and log directories (XDG), overridable for tests.

Every function reads the environment when called, so a test fixture that sets
HOME / XDG_* (or the REMOTE_RUNTIME_* overrides) redirects everything.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "remote-runtime"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def config_dir() -> Path:
    override = os.environ.get("REMOTE_RUNTIME_CONFIG_DIR")
    return Path(override) if override else _xdg("XDG_CONFIG_HOME", ".config") / APP


def state_dir() -> Path:
    override = os.environ.get("REMOTE_RUNTIME_STATE_DIR")
    return Path(override) if override else _xdg("XDG_STATE_HOME", ".local/state") / APP


def cache_dir() -> Path:
    override = os.environ.get("REMOTE_RUNTIME_CACHE_DIR")
    return Path(override) if override else _xdg("XDG_CACHE_HOME", ".cache") / APP


def log_dir() -> Path:
    return state_dir() / "logs"


def default_profiles_file() -> Path:
    return config_dir() / "profiles.yaml"


def ssh_dir() -> Path:
    return Path.home() / ".ssh"


def user_ssh_config() -> Path:
    return ssh_dir() / "config"


def user_known_hosts() -> Path:
    return ssh_dir() / "known_hosts"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable only by the user."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
