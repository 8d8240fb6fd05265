"""The CLI run as on Windows: every Python it starts imports windows_like_site/sitecustomize.py
(POSIX-only modules unimportable, SIGHUP gone, SIGBREAK present, SIGTERM uncatchable)."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
from pathlib import Path

from support.cli import cli_argv, cli_env

SITE = Path(__file__).resolve().parent / "windows_like_site"
SIGBREAK = int(signal.SIGUSR1)  # how the simulation numbers SIGBREAK


def env() -> dict[str, str]:
    """cli_env() with the simulation first on PYTHONPATH (inherited by the supervisor)."""
    environ = cli_env()
    environ["PYTHONPATH"] = os.pathsep.join((str(SITE), environ["PYTHONPATH"]))
    # Windows always sets USERNAME; getpass.getuser() (paramiko's %u) reads it there,
    # where POSIX would fall back to the user database.
    environ.setdefault("USERNAME", getpass.getuser())
    return environ


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, env=env(),
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), stdin=subprocess.DEVNULL, timeout=timeout, check=False)
