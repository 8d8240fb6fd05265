"""`list` reads a runtime's activity through the tunnel: idle since the latest of the
server's start and its kernels' last activity; nothing idle while a kernel is busy or a
client is connected; the planned stop is that plus the idle stop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.http import json_server

from remote_runtime import activity


@pytest.fixture
def server() -> Iterator[dict[str, Any]]:
    answers: dict[str, Any] = {"/api/status": {"started": "2030-01-01T00:00:00.000000Z"},
                               "/api/kernels": []}
    with json_server(answers, "t0k") as port:
        answers["port"] = port
        yield answers


def test_idle_since_and_planned_stop(server: dict[str, Any]) -> None:
    started = 1893456000.0  # 2030-01-01
    read = activity.read(server["port"], "t0k", 600)
    assert read == activity.Activity(0, 0, 0, started, started + 600)
    server["/api/kernels"] = [
        {"execution_state": "idle", "connections": 0, "last_activity": "2030-01-01T00:10:00Z"}]
    read = activity.read(server["port"], "t0k", None)
    assert read is not None and read.idle_since == started + 600 and read.stop_at is None
    server["/api/kernels"].append({"execution_state": "busy", "connections": 1})
    read = activity.read(server["port"], "t0k", 600)
    assert read is not None and (read.busy, read.connections) == (1, 1)
    assert read.idle_since is None and read.stop_at is None and read.idle_seconds == 0
    assert read.to_dict() == {"kernels": 2, "busy": 1, "connections": 1, "idle_seconds": 0,
                              "idle_stop_at": None}
    assert activity.read(server["port"], "wrong", 600) is None  # no answer: nothing shown
