"""Config, state, cache and log directories where each OS keeps them (platformdirs).

  Linux (XDG)  ~/.config/remote-runtime, ~/.local/state/remote-runtime (logs in its
               logs/), ~/.cache/remote-runtime; $XDG_*_HOME honoured
  macOS        ~/Library/Application Support/remote-runtime (config and state),
               ~/Library/Caches/remote-runtime, ~/Library/Logs/remote-runtime
  Windows      %LOCALAPPDATA%\\remote-runtime (config and state), its Cache\\ and Logs\\

Every function reads the environment when called, so a test fixture that sets
HOME / XDG_* (or the REMOTE_RUNTIME_* overrides) redirects everything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platformdirs.api import PlatformDirsABC

APP = "remote-runtime"


def _platform_dirs(platform: str) -> PlatformDirsABC:
    """platformdirs' answer for `platform` (a `sys.platform` value), made now."""
    if platform == "win32":
        from platformdirs.windows import Windows

        return Windows(APP, appauthor=False, roaming=False)
    if platform == "darwin":
        from platformdirs.macos import MacOS

        return MacOS(APP, appauthor=False)
    from platformdirs.unix import Unix

    return Unix(APP, appauthor=False)


def _dirs() -> PlatformDirsABC:
    return _platform_dirs(sys.platform)


def config_dir() -> Path:
    override = os.environ.get("REMOTE_RUNTIME_CONFIG_DIR")
    return Path(override) if override else Path(_dirs().user_config_dir)


def state_dir() -> Path:
    override = os.environ.get("REMOTE_RUNTIME_STATE_DIR")
    return Path(override) if override else Path(_dirs().user_state_dir)


def cache_dir() -> Path:
    override = os.environ.get("REMOTE_RUNTIME_CACHE_DIR")
    return Path(override) if override else Path(_dirs().user_cache_dir)


def log_dir(platform: str | None = None) -> Path:
    """Supervisor logs and errors.log: the OS's log dir on macOS and Windows (where
    Console.app and users look); on Linux the state dir's logs/, as before."""
    platform = platform or sys.platform
    if os.environ.get("REMOTE_RUNTIME_STATE_DIR") or platform not in ("win32", "darwin"):
        return state_dir() / "logs"
    return Path(_platform_dirs(platform).user_log_dir)


def default_profiles_file() -> Path:
    return config_dir() / "profiles.yaml"


def ssh_dir() -> Path:
    """~/.ssh, where OpenSSH keeps it on every OS (%USERPROFILE%\\.ssh on Windows)."""
    return Path.home() / ".ssh"


def user_ssh_config() -> Path:
    return ssh_dir() / "config"


def user_known_hosts() -> Path:
    return ssh_dir() / "known_hosts"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable only by the user (on Windows the user's
    profile directories are private by their ACLs; the mode bits do nothing there)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
