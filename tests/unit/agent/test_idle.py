"""The agent's idle stop, run here on this machine's Python: the monitor's activity probe
against a small HTTP server, and the watcher over a runs directory it shares with a
stand-in monitor (this test). Its power off is a command that only writes a file."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.http import json_server

from remote_runtime.agent import idle
from remote_runtime.agent.common import base_dir


def test_parse_time() -> None:
    assert idle.parse_time("1970-01-01T00:01:40.250000Z") == 100.25
    assert idle.parse_time("1970-01-01T00:01:40Z") == 100.0
    assert idle.parse_time("not a time") == 0.0


@pytest.fixture
def kernels_api() -> Iterator[dict[str, Any]]:
    """GET /api/kernels answering `state["/api/kernels"]`, only with the right token."""
    state: dict[str, Any] = {"/api/kernels": []}
    with json_server(state, "secret") as port:
        state["port"] = port
        yield state


def test_activity_probe(kernels_api: dict[str, Any], tmp_path: Path) -> None:
    config = {"idle_stop_seconds": 60, "bind_host": "127.0.0.1", "port": kernels_api["port"],
              "token": "secret"}
    activity = idle.Activity(config, str(tmp_path))
    started = activity.active_at
    kernels_api["/api/kernels"] = [{"execution_state": "idle", "connections": 0,
                               "last_activity": "2000-01-01T00:00:00.000000Z"}]
    activity.poll()
    record = json.loads((tmp_path / "activity.json").read_text())
    assert record["busy"] == 0 and record["connections"] == 0 and record["kernels"] == 1
    assert record["active_at"] == started  # an old kernel does not move it back
    kernels_api["/api/kernels"][0].update(execution_state="busy")
    activity.next = 0
    activity.poll()
    record = json.loads((tmp_path / "activity.json").read_text())
    assert record["busy"] == 1 and record["active_at"] >= started
    assert kernels_api["authorization"][-1] == "token secret"  # never in the URL
    activity.token, activity.next = "wrong", 0
    activity.poll()
    assert "403" in json.loads((tmp_path / "activity.json").read_text())["error"]
    no_idle_stop = idle.Activity({**config, "idle_stop_seconds": None}, str(tmp_path / "x"))
    no_idle_stop.poll()
    assert not (tmp_path / "x").exists()  # nothing polled without an idle stop


def _run(base: Path, name: str, **state: Any) -> Path:
    directory = base / "runs" / name
    directory.mkdir(parents=True)
    (directory / "state.json").write_text(json.dumps({"monitor_pid": os.getpid(),
                                                      "started": time.time(), **state}))
    return directory


def _monitor(directory: Path, stop: threading.Event) -> None:
    """What the run's monitor does with a stop file: stop, and say why."""
    while not stop.is_set():
        if (directory / "stop").exists():
            state = json.loads((directory / "state.json").read_text())
            state.update(stopped=time.time(), reason=(directory / "stop").read_text())
            (directory / "state.json").write_text(json.dumps(state))
            return
        time.sleep(0.05)


def test_the_watcher_waits_while_busy_then_stops_and_powers_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    off = tmp_path / "powered-off"
    monkeypatch.setenv("REMOTE_RUNTIME_POWEROFF", f"echo off >> {off}")
    monkeypatch.setattr(idle, "GRACE", 0.1)
    base = Path(base_dir())
    run = _run(base, "r1")
    (run / "activity.json").write_text(json.dumps({"busy": 1, "active_at": time.time()}))
    (base / idle.CONFIG).write_text(json.dumps({"idle_stop_seconds": 1.5,
                                                "since": time.time()}))
    stop = threading.Event()
    monitor = threading.Thread(target=_monitor, args=(run, stop), daemon=True)
    monitor.start()
    watcher = threading.Thread(target=idle.watch, args=(str(base),), daemon=True)
    watcher.start()
    busy_until = time.monotonic() + 3
    while time.monotonic() < busy_until:  # a kernel keeps running: no stop
        (run / "activity.json").write_text(json.dumps({"busy": 1, "active_at": time.time()}))
        time.sleep(0.2)
    assert not (run / "stop").exists() and not off.exists()
    (run / "activity.json").write_text(json.dumps({"busy": 0, "connections": 0,
                                                   "active_at": time.time()}))
    watcher.join(timeout=30)
    stop.set()
    assert not watcher.is_alive()
    reason = json.loads((run / "state.json").read_text())["reason"]
    assert reason.startswith("idle for ") and reason.endswith("the VM powers off")
    assert off.read_text() == "off\n"
    status = json.loads((base / idle.STATUS).read_text())
    assert status["poweroff_status"] == 0 and status["powered_off"] >= status["stop_at"]


def test_start_sets_or_clears_the_idle_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(idle, "detach", started.append)  # no daemon out of pytest
    base = Path(base_dir())
    idle.configure({"idle_stop_seconds": 90})
    assert json.loads((base / idle.CONFIG).read_text())["idle_stop_seconds"] == 90.0
    assert len(started) == 1
    idle.configure({"idle_stop_seconds": None})  # a start without it ends the watcher
    assert not (base / idle.CONFIG).exists()


def test_never_powers_off_a_machine_that_is_not_a_gce_vm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(idle.subprocess, "run", lambda argv, **kw: ran.append(argv))
    monkeypatch.delenv("REMOTE_RUNTIME_POWEROFF", raising=False)
    logged: list[str] = []
    monkeypatch.setattr(idle, "DMI_PRODUCT", str(tmp_path / "no-dmi"))
    assert idle.power_off(logged.append) is None and ran == []
    assert logged == ["not a Compute Engine VM: the servers were stopped; not powering off"]
    dmi = tmp_path / "product_name"
    dmi.write_text("Google Compute Engine\n")
    monkeypatch.setattr(idle, "DMI_PRODUCT", str(dmi))
    with pytest.raises(AttributeError):  # our stand-in returns None: the argv is what counts
        idle.power_off(logged.append)
    expected = ["shutdown", "-h", "now"] if os.getuid() == 0 else \
        ["sudo", "-n", "shutdown", "-h", "now"]
    assert ran == [expected]
