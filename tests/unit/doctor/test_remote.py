"""The remote stage: the real agent over a real SSH transport (mockssh runs it with this
machine's Python), and each verdict's line from the facts it rests on."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mockssh
import pytest
from support.net import free_port

from remote_runtime import kernel, ssh
from remote_runtime.doctor import FAILED, OK, WARNING, Options, Report, Walk
from remote_runtime.doctor import remote as stage
from remote_runtime.profiles import JupyterSettings, KernelSettings, Profile, SSHSettings
from remote_runtime.ssh import Endpoint

pytestmark = pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")
USER_KEY = Path(mockssh.__file__).parent / "sample-user-key"


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ssh.Session]:
    monkeypatch.chdir(tmp_path)
    with mockssh.Server({"alice": str(USER_KEY)}) as server, ssh.connect(
            Endpoint(host="127.0.0.1", port=server.port, user="alice", identity_file=USER_KEY,
                     known_hosts=tmp_path / "known_hosts"),
            accept_new_host_key=True) as connected:
        yield connected


def walk_for(tmp_path: Path, kernel_python: str = sys.executable, **jupyter: Any) -> Walk:
    walk = Walk(Options(), report=Report("lab"))
    settings = {"python": sys.executable, "env": "managed", "workdir": str(tmp_path),
                "port": free_port(), "port_explicit": True, **jupyter}
    walk.profile = Profile(name="lab", source=tmp_path / "profiles.yaml",
                           ssh=SSHSettings(host="lab"), jupyter=JupyterSettings(**settings),
                           kernel=KernelSettings(python=kernel_python))
    return walk


def checks(walk: Walk) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in walk.report.checks}


def test_a_fresh_remote_through_the_agent(session: ssh.Session, tmp_path: Path,
                                          isolated: object,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setitem(stage.STACK_CHECKS, "classic",
                        lambda walk: seen.append(walk.stack.stack))
    walk = walk_for(tmp_path)
    walk.session = session
    stage.run(walk)
    found = checks(walk)
    assert found["python"][0] == OK and sys.executable in found["python"][1]
    assert found["stack"] == (OK, found["stack"][1])
    assert "is not built yet" in found["stack"][1]  # an empty cache dir (the test's own)
    assert found["routes"][0] == OK
    assert found["venv"][0] == OK and "ensurepip" in found["venv"][1]
    assert found["kernel"] == (OK, f"{sys.executable} (Python {sys.version.split()[0]}; "
                                   "kernel.python) has ipykernel")
    assert found["port"][0] == OK
    assert found["disk"][0] in (OK, WARNING)
    assert seen == ["classic"]  # a stack's own checks run after its line
    assert walk.stopped is None


def test_a_remote_python_that_is_not_there(session: ssh.Session, tmp_path: Path) -> None:
    walk = walk_for(tmp_path, python=str(tmp_path / "no-such-python"))
    walk.session = session
    stage.run(walk)
    status, detail = checks(walk)["python"]
    assert status == FAILED and "no-such-python" in detail
    assert walk.stopped == "the remote agent cannot run"


def test_a_kernel_python_that_is_not_there(session: ssh.Session, tmp_path: Path) -> None:
    walk = walk_for(tmp_path, kernel_python=str(tmp_path / "gone" / "python3"))
    walk.session = session
    stage.run(walk)
    status, detail = checks(walk)["kernel"]
    assert status == FAILED and str(tmp_path / "gone" / "python3") in detail
    assert walk.stopped == "the kernel's Python cannot be found"
    assert checks(walk)["port"][0] == OK  # the rest of the remote is still checked


CHOICE = kernel.KernelChoice(python="/usr/bin/python3", why="auto: the login environment's "
                             "python3", version="3.12.3", executable="/usr/bin/python3.12",
                             prefix="/usr", setup=("module load cuda",))


@pytest.mark.parametrize(("has", "policy", "status", "text", "fix"), [
    (True, "ask", OK, "/usr/bin/python3 (Python 3.12.3 at /usr/bin/python3.12; auto: the "
     "login environment's python3, after kernel.setup (1 line)) has ipykernel", ""),
    (False, "yes", WARNING, "has no ipykernel: `up` installs it", "or install it now: "
     "/usr/bin/python3 -m pip install ipykernel"),
    (False, "ask", WARNING, "has no ipykernel: `up` asks to install it", "install it: "
     "/usr/bin/python3 -m pip install ipykernel, or set kernel.install_ipykernel: yes"),
    (False, "no", FAILED, "has no ipykernel: Colab cannot start a kernel", "install it: "
     "/usr/bin/python3 -m pip install ipykernel, or set kernel.python"),
])
def test_kernel_verdicts(has: bool, policy: str, status: str, text: str, fix: str,
                         tmp_path: Path) -> None:
    walk = walk_for(tmp_path)
    stage._kernel_verdict(walk, CHOICE, has, policy)
    [check] = walk.report.checks
    assert check.status == status and text in check.detail
    assert check.fix.startswith(fix) if fix else check.fix == ""
    # No short runtime is started where `up` would install ipykernel (or ask to).
    assert (walk.stopped is None) == has
    if walk.stopped is not None and status == WARNING:
        assert "the doctor installs nothing" in walk.stopped


def test_ports_on_the_remote(tmp_path: Path) -> None:
    for free, explicit, status in (([8888], True, OK), ([8889], False, WARNING),
                                   ([8889], True, FAILED), ([], False, FAILED)):
        walk = walk_for(tmp_path)
        walk.remote_free = free
        stage._ports(walk, 8888, explicit)
        assert walk.report.checks[0].status == status, (free, explicit)


def test_disk_space(tmp_path: Path) -> None:
    gb = 1024 ** 3
    facts = {"disk": {"env": {"path": "/c", "free": 100 * 1024 ** 2},
                      "workdir": {"path": "/w", "free": int(0.5 * gb)}}}
    walk = walk_for(tmp_path)
    stage._disk(walk, facts, built=False)
    assert [c.status for c in walk.report.checks] == [FAILED, WARNING]
    assert walk.stopped == "no room for the managed env"
    walk = walk_for(tmp_path)
    stage._disk(walk, {"disk": {"env": {"path": "/c", "free": 100 * 1024 ** 2},
                                "workdir": {"path": "/w", "free": 5 * gb}}}, built=True)
    assert [c.status for c in walk.report.checks] == [WARNING, OK]


def test_a_stack_provision_does_not_plan_runs_its_own_checks(
        session: ssh.Session, tmp_path: Path, isolated: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack named by jupyter.stack that is not a Jupyter found or built here (the
    profile schema is bypassed: this stands for one a later stack adds)."""
    walk = walk_for(tmp_path, stack="container-thing")
    walk.session = session
    stage.run(walk)
    assert checks(walk)["stack"][0] == WARNING  # no checks of its own yet
    monkeypatch.setitem(stage.STACK_CHECKS, "container-thing",
                        lambda walk: walk.ok("remote", "image", f"probed {walk.probe.python}"))
    walk = walk_for(tmp_path, stack="container-thing")
    walk.session = session
    stage.run(walk)
    found = checks(walk)
    assert found["image"] == (OK, f"probed {sys.executable}") and "stack" not in found
    assert found["port"][0] == OK
