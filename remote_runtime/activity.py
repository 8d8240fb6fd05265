"""What a runtime is doing, read through the tunnel: kernels busy, clients connected, how
long it has been idle and when the VM's agent plans to power it off (`idle_stop_minutes`).

The rule is the agent's (agent/idle.py): idle means no kernel busy and no client
connected to a kernel; it has been idle since the latest of the server's start and the
kernels' last activity. The agent polls, so the planned stop is approximate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .server_api import ServerApi, ServerApiError, parse_time


@dataclass(frozen=True)
class Activity:
    kernels: int
    busy: int
    connections: int
    idle_since: float | None  # epoch seconds; None while something runs or is connected
    stop_at: float | None  # when the agent powers the VM off, if nothing happens before

    @property
    def idle_seconds(self) -> float:
        return 0.0 if self.idle_since is None else max(0.0, time.time() - self.idle_since)

    def to_dict(self) -> dict[str, Any]:
        return {"kernels": self.kernels, "busy": self.busy, "connections": self.connections,
                "idle_seconds": round(self.idle_seconds), "idle_stop_at": self.stop_at}


def read(port: int, token: str, idle_stop_seconds: float | None,
         timeout: float = 3.0) -> Activity | None:
    """The runtime's activity, or None when the server does not answer."""
    api = ServerApi(port, token, timeout=timeout)
    try:
        status = api.request("GET", "/api/status")
        kernels = api.request("GET", "/api/kernels")
    except (ServerApiError, ValueError):
        return None
    busy = sum(1 for k in kernels if k.get("execution_state") == "busy")
    connections = sum(int(k.get("connections") or 0) for k in kernels)
    idle_since = None
    if not busy and not connections:
        moments = [parse_time(t) for t in [status.get("started"),
                                           *(k.get("last_activity") for k in kernels)] if t]
        idle_since = max(moments) if moments else None
    stop_at = None if idle_since is None or idle_stop_seconds is None \
        else idle_since + idle_stop_seconds
    return Activity(len(kernels), busy, connections, idle_since, stop_at)
