"""Fixtures of the integration tier: the sandbox host (a real OpenSSH sshd in its own
network namespace), a clean remote per test, and `up` processes killed at the end.

Every test collected here is marked `integration` (it needs root, namespaces, sshd).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from support.cli import UpProcess
from support.env import SANDBOX_REMOTE_CACHE, Isolated, require_netns_sandbox, require_sshd
from support.remote import Teardown, checked_remote
from support.tunnel import TargetServer, echo, open_transport, target

from sandbox import Sandbox
from sandbox.sshd import Sshd

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

    def start(*args: str) -> UpProcess:
        up = UpProcess.start(*args)
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real OpenSSH sshd listening on 127.0.0.1, for the forwarder's tests."""
    require_sshd()
    with Sshd(tmp_path_factory.mktemp("sshd"), listen=("127.0.0.1", 0)) as server:
        yield server


@pytest.fixture
def transport(sshd: Sshd) -> Iterator[paramiko.Transport]:
    """An authenticated paramiko transport to `sshd` over the socket `up` uses (with
    read-ahead), closed after the test."""
    opened = open_transport(sshd)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["read-ahead", "plain socket"])
def any_transport(request: pytest.FixtureRequest, sshd: Sshd) -> Iterator[paramiko.Transport]:
    """`transport`, over either socket: the forwarder sends held data differently."""
    opened = open_transport(sshd, read_ahead=request.param == "read-ahead")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def echo_server() -> Iterator[TargetServer]:
    with target(echo) as server:
        yield server
