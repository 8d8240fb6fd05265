"""`doctor` on the terminal: a line per check as it is made, its fix under a failure or a
warning, and the verdict (the first broken link and its exit code) at the end."""

from __future__ import annotations

from rich.console import Console

from ..doctor import FAILED, OK, SKIPPED, STAGES, WARNING, Check, Report
from .render import text

MARKS = {OK: ("ok", "green"), WARNING: ("warning", "yellow"), FAILED: ("FAILED", "red"),
         SKIPPED: ("skipped", "dim")}
STAGE_WIDTH = max(len(stage.name) for stage in STAGES)


def check_line(out: Console, check: Check) -> None:
    label, style = MARKS.get(check.status, (check.status, ""))
    name = "" if check.status == SKIPPED else f"{check.name}: "
    out.print(text((f"{label:<8}", style), f"{check.stage:<{STAGE_WIDTH}}  {name}"
                   f"{check.detail}"))
    if check.fix and check.status in (FAILED, WARNING):
        out.print(text(" " * (10 + STAGE_WIDTH), ("fix:", "bold"), f" {check.fix}"))


def header(out: Console, name: str | None) -> None:
    what = f"profile '{name}'" if name else "this machine"
    out.print(text(("remote-runtime doctor", "bold"), f": {what}, from the profile to "
                   "the browser"))


def verdict(out: Console, report: Report) -> None:
    stage = report.failed_stage
    warnings = sum(1 for c in report.checks if c.status == WARNING)
    if stage is None:
        extra = f" ({warnings} warning(s) above)" if warnings else ""
        out.print(text(("no broken link found", "green"), extra))
        return
    out.print(text(("first broken link: ", "red"), f"{stage.name} ({stage.title}); "
                   f"exit {int(stage.exit_code)}"))
