"""`paths`: each OS's user directories (platformdirs), the overrides tests and users use."""

from __future__ import annotations

from pathlib import Path

import platformdirs.windows
import pytest
from support.env import Isolated

from remote_runtime import paths


def test_linux_follows_xdg(isolated: Isolated) -> None:
    app = "remote-runtime"
    assert paths.config_dir() == isolated.config / app
    assert paths.state_dir() == isolated.state / app
    assert paths.cache_dir() == isolated.cache / app
    assert paths.log_dir() == isolated.state / app / "logs"
    assert paths.default_profiles_file() == isolated.config / app / "profiles.yaml"
    assert paths.ssh_dir() == isolated.home / ".ssh"


def test_linux_without_xdg_vars_and_with_a_relative_one(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # not absolute: ignored, as XDG says
    assert paths.config_dir() == isolated.home / ".config" / "remote-runtime"
    assert paths.state_dir() == isolated.home / ".local" / "state" / "remote-runtime"


def test_overrides_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, name in (("CONFIG", "c"), ("STATE", "s"), ("CACHE", "k")):
        monkeypatch.setenv(f"REMOTE_RUNTIME_{var}_DIR", str(tmp_path / name))
    assert (paths.config_dir(), paths.state_dir(), paths.cache_dir()) == (
        tmp_path / "c", tmp_path / "s", tmp_path / "k")
    assert paths.log_dir("darwin") == tmp_path / "s" / "logs"  # logs follow an overridden state


def test_macos_dirs(isolated: Isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var)  # platformdirs honours them on macOS too, when set
    mac = paths._platform_dirs("darwin")
    library = isolated.home / "Library"
    assert Path(mac.user_config_dir) == library / "Application Support" / "remote-runtime"
    assert Path(mac.user_state_dir) == library / "Application Support" / "remote-runtime"
    assert Path(mac.user_cache_dir) == library / "Caches" / "remote-runtime"
    assert paths.log_dir("darwin") == library / "Logs" / "remote-runtime"


def test_windows_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    local = r"C:\Users\ada\AppData\Local"
    asked: list[str] = []

    def folder(csidl: str) -> str:
        asked.append(csidl)
        return local

    monkeypatch.setattr(platformdirs.windows, "get_win_folder", folder)
    win = paths._platform_dirs("win32")
    # Not roaming: records name local processes and ports, meaningless on another machine.
    assert set(asked) <= {"CSIDL_LOCAL_APPDATA"}
    for got in (win.user_config_dir, win.user_state_dir):
        assert got.startswith(local) and got.endswith("remote-runtime")
    assert win.user_cache_dir.startswith(local) and win.user_cache_dir.endswith("Cache")
    log = str(paths.log_dir("win32"))
    assert log.startswith(local) and log.endswith("Logs")
    assert set(asked) == {"CSIDL_LOCAL_APPDATA"}
