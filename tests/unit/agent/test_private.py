"""Directories the agent runs things from must be the user's alone: anything another user
owns or could write to is refused with one line that says how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remote_runtime.agent import common, private


def test_a_private_dir_passes_and_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "base"
    assert private.make_private_dir(str(path)) == str(path)
    assert (path.stat().st_mode & 0o777) == 0o700
    path.chmod(0o755)  # readable by others, not writable: made private again
    private.make_private_dir(str(path))
    assert (path.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize(("mode", "who"), [(0o770, "its group"), (0o703, "others"),
                                           (0o777, "its group and others")])
def test_a_writable_dir_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = tmp_path / "base"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(private.Refusal) as info:
        private.check_dir(str(path))
    assert info.value.message.startswith(f"{path} is writable by {who} (mode {mode:04o})")
    assert info.value.hint == f"on the remote host: chmod go-w {path}"


def test_a_dir_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    path = tmp_path / "base"
    path.mkdir(mode=0o700)
    owner = path.stat().st_uid
    monkeypatch.setattr(private.os, "getuid", lambda: owner + 4242)
    with pytest.raises(private.Refusal, match=f"belongs to another user \\(uid {owner}"):
        private.check_dir(str(path))


def test_a_planted_env_or_run_dir_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "remote-runtime"
    (base / "envs" / "colab-py311-abc" / "bin").mkdir(parents=True)
    (base / "runs" / "box-1").mkdir(parents=True)
    for path in (base, base / "envs", base / "runs", base / "envs" / "colab-py311-abc",
                 base / "runs" / "box-1"):
        path.chmod(0o700)
    private.check_tree(str(base))
    (base / "envs" / "colab-py311-abc").chmod(0o777)
    with pytest.raises(private.Refusal, match="colab-py311-abc is writable"):
        private.check_tree(str(base))


def test_the_agent_cache_is_checked_before_use(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "remote-runtime").mkdir(mode=0o700)
    (tmp_path / "remote-runtime").chmod(0o775)
    with pytest.raises(private.Refusal, match="remote-runtime is writable by its group"):
        common.base_dir()
    (tmp_path / "remote-runtime").chmod(0o700)
    assert common.base_dir() == os.path.join(str(tmp_path), "remote-runtime")
