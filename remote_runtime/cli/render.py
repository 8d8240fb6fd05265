"""Text renderings of the core's results; `--json` prints their to_dict() instead."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..control import RuntimeStatus
from ..health import HealthReport
from ..jupyter import COLAB_ORIGIN

BROWSER_HELP = f"""\
In Colab ({COLAB_ORIGIN}): Connect (top right) > "Connect to a local runtime",
paste the URL above, then Connect.
  Chrome/Edge: when the site asks to "access other apps and services on this device"
    (local network access), click Allow; without it the connection is blocked.
  Firefox: in about:config set network.websocket.allowInsecureFromHTTPS to true.
  Safari and Brave shields may block the connection to localhost."""


def up(out: Console, info: dict[str, Any], *, detached: bool) -> None:
    out.print(f"[bold green]Runtime '{info['name']}' is up[/bold green] "
              f"on {info['target']}, port {info['port']} (forwarded to localhost:{info['port']})")
    for note in info.get("notes", []):
        out.print(f"[yellow]note:[/yellow] {note}")
    out.print()
    out.print(f"  [bold]{info['url']}[/bold]")
    out.print()
    out.print(BROWSER_HELP)
    out.print()
    if detached:
        out.print(f"Running in the background (supervisor pid {info['pid']}, log {info['log']}).")
        out.print(f"Stop it with: remote-runtime down {info['name']}")
    else:
        out.print("Press Ctrl-C to stop: the remote server, its kernels and the tunnel "
                  "are torn down.")


def _age(since: float) -> str:
    seconds = max(0, int(time.time() - since))  # a clock stepped back: not negative
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def runtimes(out: Console, source: Path, rows: list[RuntimeStatus]) -> None:
    table = Table(title=str(source), title_justify="left", box=None, pad_edge=False)
    for column in ("NAME", "KIND", "TARGET", "PORT", "STATE", "UP FOR", "HEALTH", "URL"):
        table.add_column(column)
    for row in rows:
        data = row.to_dict()
        state_text = row.state
        if row.live_status:
            state_text += f" (vm {row.live_status})"
        if data.get("reconnects"):
            state_text += f", {data['reconnects']} reconnect(s)"
        health_text = ""
        if row.health is not None:
            failure = row.health.first_failure
            health_text = "ok" if failure is None else f"failing: {failure.name}"
        table.add_row(row.profile.name, row.profile.kind, row.profile.target,
                      str(data.get("port", row.profile.jupyter.port)), state_text,
                      _age(data["since"]) if "since" in data else "", health_text,
                      data.get("url", ""))
    out.print(table)
    if not rows:
        out.print("no profiles yet: see profiles.example.yaml")


def health_report(out: Console, name: str, report: HealthReport) -> None:
    verdict = "[green]healthy[/green]" if report.ok else "[red]unhealthy[/red]"
    out.print(f"runtime '{name}' ({report.url}): {verdict}")
    for check in report.checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        out.print(f"  {mark} {check.name:<10} {check.detail}")
