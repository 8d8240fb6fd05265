"""Fixtures of the integration tier: the sandbox host (a real OpenSSH sshd in its own
network namespace), a clean remote per test, and `up` processes killed at the end.

Every test collected here is marked `integration` (it needs root, namespaces, sshd).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import UpProcess
from support.env import SANDBOX_REMOTE_CACHE, Isolated, require_netns_sandbox
from support.remote import Teardown, checked_remote

from sandbox import Sandbox

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A real OpenSSH sshd in its own network namespace, for the whole session."""
    require_netns_sandbox()
    SANDBOX_REMOTE_CACHE.mkdir(parents=True, exist_ok=True)
    with Sandbox(
        tmp_path_factory.mktemp("sandbox"), mode="netns", remote_cache_dir=SANDBOX_REMOTE_CACHE
    ) as box:
        yield box


@pytest.fixture
def clean_remote(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, checked empty before the test; whatever the test left on the remote
    (a failed teardown) is killed after it, so the next test starts clean."""
    with checked_remote(sandbox) as box:
        yield box


@pytest.fixture
def teardown(isolated: Isolated, clean_remote: Sandbox) -> Iterator[Teardown]:
    """`down --all` for every profiles file the test registers, then its leftovers killed."""
    with Teardown.guard(isolated) as guard:
        yield guard


@pytest.fixture
def start_up() -> Iterator[Any]:
    """Start `up` processes; any still running when the test ends are killed."""
    started: list[UpProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> UpProcess:
        up = UpProcess.start(*args, env=env)
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill()
