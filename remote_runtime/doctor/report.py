"""The doctor's result as data: one `Check` per link, grouped by stage, in the order the
links are walked. The CLI renders it as lines or as JSON; the exit code is the first
failing stage's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExitCode

OK, WARNING, FAILED, SKIPPED = "ok", "warning", "failed", "skipped"


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    exit_code: ExitCode


# In the order the links are walked, from the profile to the browser.
STAGES = (
    Stage("profile", "the profile and its effective SSH settings", ExitCode.PROFILE),
    Stage("cloud", "the GCE VM: credentials, project, instance, key, host keys",
          ExitCode.CLOUD),
    Stage("reach", "reaching the SSH server: DNS, TCP, ProxyCommand, jump hosts, IAP",
          ExitCode.UNREACHABLE),
    Stage("ssh", "the SSH handshake, the host key, the login", ExitCode.SSH),
    Stage("remote", "the remote side: Python, the server stack, the kernel, ports, disk",
          ExitCode.REMOTE_SETUP),
    Stage("local", "this machine: the local port, loopback", ExitCode.PORT_IN_USE),
    Stage("routes", "Colab's routes through the tunnel, from both Colab origins",
          ExitCode.HEALTH),
    Stage("browser", "what the browsers on this machine need", ExitCode.BROWSER),
)
STAGE = {stage.name: stage for stage in STAGES}


@dataclass(frozen=True)
class Check:
    """One link checked: ok, warning (works, but say so), failed (with the fix) or skipped
    (an earlier failure means it cannot be checked)."""

    stage: str
    name: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "fix": self.fix or None}


@dataclass
class Report:
    name: str | None  # the profile checked (None: only this machine)
    checks: list[Check] = field(default_factory=list)
    on_check: Callable[[Check], None] | None = None  # told of each check as it is made

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        if self.on_check is not None:
            self.on_check(check)
        return check

    @property
    def failed_stage(self) -> Stage | None:
        """The first stage (in walking order) with a failed check."""
        failed = {c.stage for c in self.checks if c.status == FAILED}
        return next((stage for stage in STAGES if stage.name in failed), None)

    @property
    def exit_code(self) -> int:
        stage = self.failed_stage
        return int(stage.exit_code) if stage is not None else int(ExitCode.OK)

    def stage_status(self, name: str) -> str:
        statuses = [c.status for c in self.checks if c.stage == name]
        for status in (FAILED, WARNING, OK):
            if status in statuses:
                return status
        return SKIPPED

    def to_dict(self) -> dict[str, Any]:
        failed = self.failed_stage
        return {
            "name": self.name,
            "ok": failed is None,
            "exit_code": self.exit_code,
            "failed_stage": failed.name if failed is not None else None,
            "stages": [
                {"name": stage.name, "title": stage.title, "exit_code": int(stage.exit_code),
                 "status": self.stage_status(stage.name),
                 "checks": [c.to_dict() for c in self.checks if c.stage == stage.name]}
                for stage in STAGES if any(c.stage == stage.name for c in self.checks)
            ],
        }
