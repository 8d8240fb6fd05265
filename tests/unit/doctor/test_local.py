"""The local stage: the port the browser will use (free, held by a runtime of ours, held by
another program, named by psutil), bound the way `up`'s forwarder binds it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from support.net import free_port

from remote_runtime import state
from remote_runtime.doctor import FAILED, OK, WARNING, Options, Report, Walk
from remote_runtime.doctor import local as stage
from remote_runtime.profiles import JupyterSettings, Profile, SSHSettings


def profile(name: str, port: int, explicit: bool) -> Profile:
    return Profile(name=name, source=Path("profiles.yaml"), ssh=SSHSettings(host="lab"),
                   jupyter=JupyterSettings(port=port, port_explicit=explicit))


def port_check(walk: Walk) -> tuple[str, str, str]:
    found = [c for c in walk.report.checks if c.name == "port"]
    assert len(found) == 1
    return found[0].status, found[0].detail, found[0].fix


def test_a_free_port(isolated: object) -> None:
    walk = Walk(Options(port=free_port()), report=Report(None))
    stage.run(walk)
    assert port_check(walk)[0] == OK
    names = [c.name for c in walk.report.checks]
    assert names == ["port", "loopback ipv4", "loopback ipv6", "localhost"]


def test_a_port_another_program_holds_is_named(isolated: object) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        found = stage.listener_of(port)  # psutil finds this very process
        assert found is not None and found["pid"] == os.getpid()
        walk = Walk(Options(), report=Report(None))
        walk.profile = profile("lab", port, explicit=True)
        stage.run(walk)
        status, detail, fix = port_check(walk)
        assert status == FAILED and f"port {port} is held by process {os.getpid()}" in detail
        assert "--port" in fix
        walk = Walk(Options(), report=Report(None))
        walk.profile = profile("lab", port, explicit=False)
        stage.run(walk, holder=lambda _port: None)  # where the OS does not say who
        status, detail, _ = port_check(walk)
        assert status == WARNING and "is taken" in detail and "next port free" in detail


def test_a_port_held_by_a_runtime_of_ours(isolated: object) -> None:
    port = free_port()
    state.claim(state.Record(name="lab", kind="ssh", pid=os.getpid(), port=port, token="t",
                             run_id="r", target="lab"))
    walk = Walk(Options(), report=Report(None))
    walk.profile = profile("lab", port, explicit=True)
    stage.run(walk)
    assert port_check(walk)[0] == OK and "runtime 'lab'" in port_check(walk)[1]
    walk = Walk(Options(), report=Report(None))
    walk.profile = profile("other", port, explicit=True)
    stage.run(walk)
    status, _detail, fix = port_check(walk)
    assert status == FAILED and "remote-runtime down lab" in fix


def test_a_url_whose_port_nothing_listens_on(isolated: object) -> None:
    port = free_port()
    walk = Walk(Options(url=f"http://localhost:{port}/?token=x"), report=Report(None))
    stage.run(walk)
    status, detail, _ = port_check(walk)
    assert status == FAILED and f"nothing listens on port {port}" in detail
