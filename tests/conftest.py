"""Fixtures for every test: an isolated environment (no real ~/.ssh, state or agent).

Every test gets its own HOME and XDG dirs under tmp_path, without
REMOTE_RUNTIME_PROFILES or an ssh-agent. Helpers live in `support/`;
integration fixtures (the sandbox host, `up` processes) in integration/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.env import LEAKY_VARS, TEST_CACHE, Isolated, unavailable
from support.openssh import install_wrapper, nss_wrapper, real_ssh


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


@pytest.fixture
def openssh(isolated: Isolated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An OpenSSH client first on PATH whose `ssh -G` sees this test's HOME as home
    (support/openssh.py), so the tool's resolver and the reference are real OpenSSH."""
    if real_ssh() is None:
        unavailable("the OpenSSH client is missing (apt-get install openssh-client)")
    if nss_wrapper() is None:
        unavailable("nss_wrapper is missing (apt-get install libnss-wrapper)")
    wrapper = install_wrapper(isolated.home, tmp_path / "openssh-bin")
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return wrapper
