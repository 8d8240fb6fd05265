"""Fixtures for every test: an isolated environment (no real ~/.ssh, state or agent).

Every test gets its own HOME and XDG dirs under tmp_path, without
REMOTE_RUNTIME_PROFILES or an ssh-agent. Helpers live in `support/`;
integration fixtures (the sandbox host, `up` processes) in integration/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.env import LEAKY_VARS, TEST_CACHE, Isolated


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Isolated:
    dirs = Isolated(
        home=tmp_path / "home",
        config=tmp_path / "xdg-config",
        state=tmp_path / "xdg-state",
        cache=tmp_path / "xdg-cache",
    )
    for path in (dirs.home, dirs.config, dirs.state, dirs.cache):
        path.mkdir()
    monkeypatch.setenv("HOME", str(dirs.home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(dirs.config))
    monkeypatch.setenv("XDG_STATE_HOME", str(dirs.state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(dirs.cache))
    # support/jupyter_venv.py reads this at call time; keep its venv cache shared.
    monkeypatch.setenv("REMOTE_RUNTIME_TEST_CACHE", str(TEST_CACHE))
    for var in LEAKY_VARS:
        monkeypatch.delenv(var, raising=False)
    return dirs
