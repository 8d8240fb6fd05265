"""The test environment: where things are, what each test is isolated from, when to skip.

Two caches are deliberately kept outside each test's isolation (computed from
the real home at import time) because building them takes seconds to minutes:
the local Jupyter stack venv (`$REMOTE_RUNTIME_TEST_CACHE`) and the sandbox's
remote cache, where the managed Jupyter venv lives.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from sandbox import docker, netns
from sandbox.common import SandboxError, find_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_HOME = Path.home()
TEST_CACHE = Path(
    os.environ.get("REMOTE_RUNTIME_TEST_CACHE") or REAL_HOME / ".cache" / "remote-runtime-tests"
)
SANDBOX_REMOTE_CACHE = TEST_CACHE / "sandbox-remote"

# Variables that would let a test see the real user's configuration or agent.
LEAKY_VARS = (
    "REMOTE_RUNTIME_PROFILES",
    "REMOTE_RUNTIME_CONFIG_DIR",
    "REMOTE_RUNTIME_STATE_DIR",
    "REMOTE_RUNTIME_CACHE_DIR",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
)


@dataclass(frozen=True)
class Isolated:
    """The private HOME and XDG dirs of one test (conftest's autouse `isolated`)."""

    home: Path
    config: Path  # XDG_CONFIG_HOME
    state: Path  # XDG_STATE_HOME
    cache: Path  # XDG_CACHE_HOME

    @property
    def state_files(self) -> list[Path]:
        """Every file under the state dir but lock files (a clean failure leaves none)."""
        return sorted(p for p in self.state.rglob("*") if p.is_file() and p.name != ".lock")

    @property
    def runtime_records(self) -> list[Path]:
        return sorted((self.state / "remote-runtime" / "runtimes").glob("*.json"))


def unavailable(reason: str) -> NoReturn:
    """Fail in CI (the real parts must run there), skip with the reason elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_sshd() -> None:
    try:
        find_binary("sshd", "/usr/sbin/sshd", hint="")
    except SandboxError:
        unavailable("OpenSSH sshd is missing (apt-get install openssh-server)")


def require_netns_sandbox() -> None:
    require_sshd()
    reason = netns.unavailable_reason()
    if reason:
        unavailable(f"network namespaces unavailable: {reason}")


def require_docker_sandbox() -> None:
    """A sandbox host with its own Docker engine, and what builds the image stand-in."""
    require_netns_sandbox()
    reason = docker.available()
    if reason:
        unavailable(f"a Docker engine for the sandbox: {reason}")
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        unavailable("debootstrap is missing (apt-get install debootstrap): it builds the "
                    "Colab image stand-in")
