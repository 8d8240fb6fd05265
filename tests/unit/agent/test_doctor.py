"""The agent's `doctor` command, run as the remote runs it (the login command reading the
agent line from stdin) by a real shell: venv support, the managed env, disk space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.pythons import without_venv

from remote_runtime import bootstrap


def ask(python: str, config: dict[str, Any], cache: Path) -> dict[str, Any]:
    line = bootstrap.agent_line(python, "doctor")
    result = subprocess.run(["/bin/sh", "-c", bootstrap.LOGIN_COMMAND],
                            input=f"{line}\n{json.dumps(config)}\n", capture_output=True,
                            text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(cache)}, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(bootstrap.after_mark(result.stdout).strip())
    return answer


def test_this_python(tmp_path: Path) -> None:
    env = tmp_path / "cache" / "remote-runtime" / "envs" / "classic-py311-abc"
    env.mkdir(parents=True)
    answer = ask(sys.executable, {"env_name": "classic-py311-abc", "workdir": str(tmp_path)},
                 tmp_path / "cache")
    assert answer["venv"]["ok"] is True and "ensurepip (pip " in answer["venv"]["reason"]
    assert answer["env"] == {"path": str(env), "built": False}
    (env / ".complete").touch()
    assert ask(sys.executable, {"env_name": "classic-py311-abc"},
               tmp_path / "cache")["env"]["built"] is True
    assert answer["disk"]["workdir"]["path"] == str(tmp_path)
    assert answer["disk"]["env"]["free"] > 0 and answer["disk"]["env"]["total"] > 0


def test_a_python_without_venv_says_why(tmp_path: Path) -> None:
    python = without_venv(tmp_path / "debian-python")
    answer = ask(str(python), {}, tmp_path / "cache")
    assert answer["venv"]["ok"] is False
    assert answer["venv"]["reason"].startswith("no ensurepip module")
    assert answer["python"] == str(python)
