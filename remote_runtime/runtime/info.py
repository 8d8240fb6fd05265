"""What `up` produced (the CLI renders it as text or JSON), and the error of a start
that teardown cancelled."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from .. import health, jupyter, redact
from ..errors import ExitCode, RemoteRuntimeError


class StartCancelled(RemoteRuntimeError):
    """Teardown began before the runtime was up."""

    exit_code = ExitCode.INTERRUPTED


@dataclass
class RuntimeInfo:
    """What `up` produced; the CLI renders it as text or JSON."""

    name: str
    kind: str
    target: str
    port: int
    token: str
    run_id: str
    server_pid: int
    jupyter: str
    health: health.HealthReport
    notes: list[str] = field(default_factory=list)
    since: float = field(default_factory=time.time)
    stack: str = "classic"  # the server stack (remote_runtime.stacks)
    routes: tuple[str, ...] = ("websocket", "cors")  # the Colab routes it serves
    remote_port: int = 0  # where the server listens on the remote (0: `port`)
    kernel: str = ""  # the Python the default kernel runs on the remote

    @property
    def url(self) -> str:
        return jupyter.colab_url(self.port, self.token)

    def to_dict(self, *, show_token: bool = False) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "url": self.url if show_token else redact.url(self.url),
            "port": self.port,
            "token": self.token if show_token else None,
            "run_id": self.run_id,
            "server_pid": self.server_pid,
            "jupyter": self.jupyter,
            "kernel": self.kernel,
            "since": self.since,
            "pid": os.getpid(),
            "health": self.health.to_dict(),
            "notes": self.notes,
            "stack": self.stack,
            "routes": list(self.routes),
            "remote_port": self.remote_port or self.port,
        }
