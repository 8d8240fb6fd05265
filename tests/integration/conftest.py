"""Fixtures of the integration tier: the sandbox host (a real OpenSSH sshd in its own
network namespace), a clean remote per test, and `up` processes killed at the end.

Every test collected here is marked `integration` (it needs root, namespaces, sshd).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from support import colab_standin
from support.cli import UpProcess
from support.docker_host import DockerBox, RegistryProcess
from support.env import (
    SANDBOX_REMOTE_CACHE,
    Isolated,
    require_docker_sandbox,
    require_netns_sandbox,
    require_sshd,
)
from support.fake_compute import FakeCompute
from support.gce import GUEST_KEY, PROJECT, Dlvm, GuestAgent, VmHost, dlvm_images, host_key
from support.remote import Teardown, checked_remote
from support.tunnel import TargetServer, echo, open_transport, target

from remote_runtime.providers.gce import keys
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

    def start(*args: str, env: dict[str, str] | None = None) -> UpProcess:
        up = UpProcess.start(*args, env=env)
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill()


@pytest.fixture(scope="session")
def vm_host(tmp_path_factory: pytest.TempPathFactory) -> VmHost:
    """nvidia-smi and power-off stand-ins for the sandbox that plays a Deep Learning VM."""
    return VmHost(tmp_path_factory.mktemp("vm-host"))


@pytest.fixture(scope="session")
def vm_sandbox(tmp_path_factory: pytest.TempPathFactory, vm_host: VmHost) -> Iterator[Sandbox]:
    """A second sandbox whose sessions find the stand-ins: on PATH (nvidia-smi) and in
    REMOTE_RUNTIME_POWEROFF (so an idle stop never reaches this machine's shutdown). Its
    remote cache is its own, as a VM's is (the idle watcher sees the runs of this VM
    only), but shares the managed envs the other sandbox built."""
    require_netns_sandbox()
    with Sandbox(tmp_path_factory.mktemp("vm-sandbox"), mode="netns",
                 remote_cache_dir=vm_host.remote_cache(SANDBOX_REMOTE_CACHE),
                 env=vm_host.env) as box:
        yield box


@pytest.fixture
def dlvm(vm_sandbox: Sandbox, vm_host: VmHost, isolated: Isolated,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Dlvm]:
    """The fake Compute API (a DLVM image family; new VMs publish the sandbox's host key)
    whose VMs are the VM sandbox, with a guest agent pushing metadata keys to its sshd."""
    vm_host.reset()
    with FakeCompute(operation_seconds=0.1, boot_seconds=0.3, max_wait_seconds=0.5) as fake, \
            checked_remote(vm_sandbox) as box, GuestAgent(fake, box), \
            Teardown.guard(isolated) as guard:
        fake.add_project(PROJECT)
        dlvm_images(fake)
        fake.guest_host_keys = host_key(box)
        monkeypatch.setenv("REMOTE_RUNTIME_COMPUTE_ENDPOINT", fake.url)
        yield Dlvm(fake, box, vm_host, guard)


@pytest.fixture
def compute(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCompute]:
    """The fake Compute API alone (a project and a DLVM image family), for CLI commands too."""
    with FakeCompute(operation_seconds=0.1, boot_seconds=0.2, max_wait_seconds=0.5) as fake:
        fake.add_project(PROJECT)
        dlvm_images(fake)
        fake.host_keys_delay = 0.2
        fake.guest_host_keys = {"ssh-ed25519": GUEST_KEY}
        monkeypatch.setenv("REMOTE_RUNTIME_COMPUTE_ENDPOINT", fake.url)
        yield fake


@pytest.fixture(scope="session")
def gce_key_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ~/.ssh/google_compute_engine pair for the session (ssh-keygen takes a while)."""
    key = tmp_path_factory.mktemp("gce-key") / keys.DEFAULT_KEY_NAME
    keys.ensure_key_pair(key, "alice", {"PATH": os.environ.get("PATH", "")}, lambda _: None)
    return key


@pytest.fixture
def gce_home(isolated: Isolated, gce_key_pair: Path) -> Path:
    """The test's HOME with that key pair in ~/.ssh, as gcloud would have left it."""
    ssh_dir = isolated.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    for suffix in ("", ".pub"):
        shutil.copy2(f"{gce_key_pair}{suffix}", ssh_dir / f"{gce_key_pair.name}{suffix}")
    return isolated.home


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


# The registry of the Colab image stand-in listens on this port of the Docker sandbox's
# loopback (test_colab_image.py's range is 25000-25499).
REGISTRY_PORT = 25000


@pytest.fixture(scope="session")
def standin_image() -> colab_standin.StandinImage:
    """The Colab image stand-in, built once (cached across runs by its recipe)."""
    require_docker_sandbox()
    return colab_standin.image()


@pytest.fixture(scope="module")
def docker_box(tmp_path_factory: pytest.TempPathFactory,
               standin_image: colab_standin.StandinImage) -> Iterator[DockerBox]:
    """A sandbox host with its own Docker engine (nothing pulled yet) and a registry on
    its loopback serving the stand-in under the name of Colab's image; per module, so
    the engine does not idle through the rest of the suite."""
    workdir = tmp_path_factory.mktemp("docker-sandbox")
    with Sandbox(workdir, mode="netns", remote_cache_dir=SANDBOX_REMOTE_CACHE,
                 docker=True) as box:
        assert box.namespace is not None
        with RegistryProcess(box.namespace.name, REGISTRY_PORT, standin_image,
                             workdir / "registry.log", delay=0.002) as registry:
            yield DockerBox(box, registry.reference(), registry)


@pytest.fixture
def docker_host(docker_box: DockerBox, isolated: Isolated) -> Iterator[DockerBox]:
    """The Docker sandbox, checked free of containers and remote processes before the
    test; after it, `down --all` for its profiles, then leftovers killed and removed."""
    assert docker_box.box.dockerd is not None
    assert not docker_box.containers(), "containers left by an earlier test"
    try:
        with checked_remote(docker_box.box), Teardown.guard(isolated) as guard:
            docker_box.teardown = guard
            yield docker_box
    finally:
        docker_box.teardown = None
        docker_box.box.dockerd.remove_containers()
