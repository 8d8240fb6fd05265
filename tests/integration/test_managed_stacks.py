"""The managed server env on every remote Python this machine has, and the modern stack.

Each test of the first kind plays a *fresh* remote host: its own sandbox (a real sshd in
a network namespace, pip reaching PyPI only through the sandbox's CONNECT proxy) whose
sessions get an empty cache dir (XDG_CACHE_HOME: no managed env, no pip cache), with the
profile's `jupyter.python` set to one pyenv interpreter. It deliberately keeps this
machine's root pip configuration in place (HOME is /root: /etc/pip.conf, /etc/xdg/pip
with its constraints, ~/.config/pip with extra indexes and find-links): that is a
realistic remote, the one on which an unpinned install backtracked for minutes
(DESIGN.md fact 12). The locked install must not care.

Ports: 20500-20999 (this file's range).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import UpProcess, assert_one_error_line, describe, list_json, run_cli
from support.colab_client import ColabClient, ColabError, DirectClient
from support.env import Isolated, require_netns_sandbox, unavailable
from support.jupyter_venv import stack_venv
from support.net import PortRange, port_closed
from support.procs import cmdline, wait_gone
from support.remote import checked_remote, remote_server, sandbox_profile, write_profiles

from remote_runtime import jupyter, stacks
from remote_runtime.errors import ExitCode
from sandbox import Sandbox

PORTS = PortRange(20500, 20999)
PYENV = Path.home() / ".pyenv" / "versions"
BUILD_TIMEOUT = 600.0  # a cold build on a loaded 2-core machine, with margin
EXIT_TIMEOUT = 60.0
StartUp = Callable[..., UpProcess]


def pyenv_pythons() -> list[tuple[tuple[int, int], Path]]:
    """(minor version, python3.X) of every CPython 3 under pyenv's versions."""
    found = []
    if PYENV.is_dir():
        for entry in sorted(PYENV.iterdir()):
            match = re.fullmatch(r"3\.(\d+)\.\d+", entry.name)
            python = entry / "bin" / f"python3.{match.group(1)}" if match else None
            if match and python is not None and python.exists():
                found.append(((3, int(match.group(1))), python))
    return sorted(found)


def _param(version: tuple[int, int], python: Path) -> object:
    return pytest.param(python, id=f"py{version[0]}.{version[1]}")


HOSTING = [_param(v, p) for v, p in pyenv_pythons() if v >= stacks.MIN_PYTHON]
TOO_OLD = [_param(v, p) for v, p in pyenv_pythons() if v < stacks.MIN_PYTHON]


def minor_of(python: Path) -> tuple[int, int]:
    match = re.search(r"python3\.(\d+)$", str(python))
    assert match, python
    return 3, int(match.group(1))


@pytest.fixture
def fresh_remote(tmp_path: Path) -> Iterator[Sandbox]:
    """A remote host on first contact: its own sandbox, an empty remote cache dir."""
    require_netns_sandbox()
    with Sandbox(tmp_path / "box", mode="netns",
                 remote_cache_dir=tmp_path / "remote-cache") as box, checked_remote(box):
        yield box


@pytest.fixture
def start_up() -> Iterator[StartUp]:
    started: list[UpProcess] = []

    def start(*args: str) -> UpProcess:
        up = UpProcess.start(*args)
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill()


def profile_for(tmp_path: Path, box: Sandbox, port: int, **jupyter_settings: object) -> Path:
    body = sandbox_profile(box, "sb", port, jupyter=dict(jupyter_settings))
    return write_profiles(tmp_path / "profiles.yaml", {"sb": body})


def installed(env: Path) -> dict[str, str]:
    """name -> version of what a managed env holds (its own pip says)."""
    out = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "list", "--format=json",
                          "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True, timeout=120)
    return {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"]
            for p in json.loads(out.stdout)}


def stop(up: UpProcess, box: Sandbox, port: int, isolated: Isolated) -> None:
    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert not wait_gone(box.remote_pids()), "remote processes left behind"
    assert port_closed(port)
    assert isolated.runtime_records == []


# --- every Python that can host the server: cold, locked, through the websocket route -------


def test_this_machine_has_pythons_to_build_on() -> None:
    """The tests below are one per interpreter found: none found is no test at all."""
    if not HOSTING or not TOO_OLD:
        unavailable(f"no CPython 3.8+ and 3.6/3.7 under {PYENV} to build the managed env on")


@pytest.mark.parametrize("python", HOSTING)
def test_cold_managed_build_serves_colab_on_every_python(
    python: Path, fresh_remote: Sandbox, tmp_path: Path, start_up: StartUp,
    isolated: Isolated,
) -> None:
    box, port, version = fresh_remote, PORTS.take(), minor_of(python)
    lock = stacks.lock_for("classic", version)
    assert lock is not None, f"no classic lock for Python {version}: run scripts/lock_stacks.py"
    up = start_up("sb", "--profiles", str(profile_for(tmp_path, box, port, python=str(python))))
    port_seen, token = up.wait_ready(BUILD_TIMEOUT)
    assert port_seen == port

    # Progress is one bar (printed once, finished, when stderr is not a terminal), never
    # pip's own output, and the build installed exactly the lock.
    err = up.stderr
    bar = [line for line in err.splitlines() if "installing the classic Jupyter stack" in line]
    total = len(lock.pins) + 3  # venv, pip, each package, the extension (pip is a pin)
    assert len(bar) == 1 and f"{total}/{total}" in bar[0], up.describe()
    for raw in ("Collecting", "Downloading", "Successfully installed", "WARNING", "pip "):
        assert raw not in err, up.describe()
    assert "websocket (jupyter_http_over_ws) and direct (CORS) routes" in up.stdout
    envs = list((tmp_path / "remote-cache" / "remote-runtime" / "envs").glob("classic-py*"))
    env = next(e for e in envs if e.is_dir())
    assert env.name == stacks.Choice("classic", version, lock, "").env_name
    have = installed(env)
    assert {name: have.get(name) for name, _ in lock.pins} == dict(lock.pins)

    # The server runs on that interpreter, and Colab's websocket route runs code.
    server = remote_server(box, port)
    exe = os.path.realpath(f"/proc/{server}/exe")
    assert exe == os.path.realpath(python), (exe, python)
    # (From Colab's second origin: `up`'s own health check already used both.)
    with ColabClient(port, token, timeout=60, origin=jupyter.COLAB_ORIGINS[1]) as colab:
        assert colab.diagnose()["extension_version"] == "0.0.7"
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print(6*7)", timeout=120).strip() == "42"
    stop(up, box, port, isolated)


# --- too old: one line, the way out ----------------------------------------------------------


@pytest.mark.parametrize("python", TOO_OLD)
def test_a_python_too_old_to_host_the_server_gets_one_line_naming_a_usable_one(
    python: Path, fresh_remote: Sandbox, tmp_path: Path, isolated: Isolated,
) -> None:
    box, port = fresh_remote, PORTS.take()
    version = minor_of(python)
    profiles = profile_for(tmp_path, box, port, python=str(python))
    result = run_cli("up", "sb", "--profiles", str(profiles), timeout=180)
    line = assert_one_error_line(
        result, ExitCode.REMOTE_SETUP,
        f"Python {version[0]}.{version[1]} ({python}) cannot host the Jupyter server",
        "it needs Python 3.8 or newer", "set jupyter.python: ")
    suggested = line.split("set jupyter.python: ", 1)[1].split(" in the profile")[0]
    # The interpreter it names exists on the host and can host the server.
    out = box.run([suggested, "-c", "import sys; print(*sys.version_info[:2])"])
    assert out.returncode == 0, out
    assert tuple(int(v) for v in out.stdout.split()) >= stacks.MIN_PYTHON
    assert "pip" not in result.stderr.lower() and "inet_aton" not in result.stderr
    assert not (tmp_path / "remote-cache" / "remote-runtime" / "envs").exists()
    assert not wait_gone(box.remote_pids())
    assert port_closed(port)
    assert isolated.runtime_records == []


# --- the modern stack: Colab's direct route only -------------------------------------------


def test_modern_stack_serves_the_direct_route_from_both_origins(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated,
) -> None:
    """`jupyter.stack: modern` builds a Jupyter Server 2 (from its own lock) and runs
    code through the CORS route, from both Colab origins; the extension's route is not
    served, and up/status/list say so."""
    box, port = clean_remote, PORTS.take()
    profiles = profile_for(tmp_path, box, port, stack="modern")
    up = start_up("sb", "--profiles", str(profiles))
    port_seen, token = up.wait_ready(BUILD_TIMEOUT)
    assert port_seen == port
    assert "Serves Colab's direct (CORS) route only (modern stack: Jupyter Server 2)" \
        in up.stdout, up.describe()
    server = remote_server(box, port)
    assert "jupyter-server" in cmdline(server) and token not in cmdline(server)

    for origin in jupyter.COLAB_ORIGINS:
        colab = DirectClient(port, token, origin=origin, timeout=60)
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print(6*7)", timeout=120).strip() == "42"
        colab.shutdown_kernel(kernel)
    with pytest.raises(ColabError, match="Access-Control-Allow-Origin is None"):
        DirectClient(port, token, origin="https://colab.google.com.evil.example").request(
            "GET", "/api/kernels")
    with ColabClient(port, token) as colab, pytest.raises(Exception, match="404"):
        colab.diagnose()  # no extension on a Jupyter Server 2

    status = run_cli("status", "sb", "--json", "--profiles", str(profiles))
    assert status.returncode == 0, describe(status)
    report = json.loads(status.stdout)
    assert report["routes"] == ["cors"] and report["stack"] == "modern"
    assert [c["name"] for c in report["health"]["checks"]] == ["api", "auth", "cors", "origins"]
    text = run_cli("status", "sb", "--profiles", str(profiles))
    assert "serves Colab's direct (CORS) route only" in text.stdout, describe(text)
    row = list_json(profiles)["sb"]
    assert row["routes"] == ["cors"] and row["health"]["ok"] is True
    stop(up, box, port, isolated)


def test_an_existing_jupyter_server_2_is_used_as_it_is(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated,
) -> None:
    """A host whose Jupyter is a Jupyter Server 2 without the extension (a Deep Learning
    VM's JupyterLab; here the tests' modern stack venv on the shared filesystem) is used
    as it is with the default env and stack (auto): no install, the direct route."""
    box, port = clean_remote, PORTS.take()
    server_venv = stack_venv(stack="modern")
    jupyter_bin = server_venv / "bin" / "jupyter"
    profiles = profile_for(tmp_path, box, port, env="auto", command=str(jupyter_bin))
    up = start_up("sb", "--profiles", str(profiles))
    _, token = up.wait_ready(BUILD_TIMEOUT)
    assert f"using the existing Jupyter at {jupyter_bin} (modern stack: direct route)" \
        in up.stderr, up.describe()
    assert "installing" not in up.stderr and "managed" not in up.stderr
    server = remote_server(box, port)
    assert str(server_venv) in cmdline(server)
    colab = DirectClient(port, token, origin=jupyter.COLAB_ORIGINS[1], timeout=60)
    kernel = colab.start_kernel()
    assert colab.execute(kernel, "print(6*7)", timeout=120).strip() == "42"
    stop(up, box, port, isolated)


def test_up_json_says_which_routes_the_runtime_serves(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated,
) -> None:
    box, port = clean_remote, PORTS.take()
    profiles = profile_for(tmp_path, box, port)
    up = start_up("sb", "--json", "--profiles", str(profiles))
    up.wait_for(lambda line: line.strip() == "}", BUILD_TIMEOUT, "the JSON answer")
    info = json.loads(up.stdout)
    assert info["stack"] == "classic" and info["routes"] == ["websocket", "cors"]
    assert info["health"]["routes"] == ["websocket", "cors"]
    names = [c["name"] for c in info["health"]["checks"]]
    assert names == ["api", "auth", "extension", "cors", "origins"]
    assert all(c["ok"] for c in info["health"]["checks"])
    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert not wait_gone(box.remote_pids())
    assert isolated.runtime_records == []
