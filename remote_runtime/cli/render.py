"""Text renderings of the core's results; `--json` prints their to_dict() instead.

Every message is printed as text, never parsed as rich markup: the consoles are
made with `console()`, and styles are applied to pieces with `text()`, so
`[gce]`, `[host]:port` or `[::1]` in a message reach the terminal as written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

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


def console(*, stderr: bool = False) -> Console:
    """A console that prints text as it is: no markup, no emoji codes, no highlighting."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


def text(*parts: str | tuple[str, str]) -> Text:
    """Plain strings and (string, style) pairs joined into one line, none parsed as markup."""
    return Text.assemble(*parts)


def up(out: Console, info: dict[str, Any], *, detached: bool) -> None:
    out.print(text((f"Runtime '{info['name']}' is up", "bold green"),
                   f" on {info['target']}, port {info['port']} "
                   f"(forwarded to localhost:{info['port']})"))
    for note in info.get("notes", []):
        out.print(text(("note:", "yellow"), f" {note}"))
    out.print()
    out.print(text("  ", (str(info["url"]), "bold")))
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
    seconds = int(time.time() - since)
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
    verdict = ("healthy", "green") if report.ok else ("unhealthy", "red")
    out.print(text(f"runtime '{name}' ({report.url}): ", verdict))
    for check in report.checks:
        mark = ("ok  ", "green") if check.ok else ("FAIL", "red")
        out.print(text("  ", mark, f" {check.name:<10} {check.detail}"))
