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
from ..jupyter import COLAB_ORIGINS
from ..ssh import Connection

_HOSTS = " or ".join(origin.removeprefix("https://") for origin in COLAB_ORIGINS)
BROWSER_HELP = f"""\
In Colab ({_HOSTS}): Connect (top right) > "Connect to a local runtime",
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


_ROUTE_NAMES = {"websocket": "websocket (jupyter_http_over_ws)", "cors": "direct (CORS)"}
_STACK_NAMES = {"classic": "notebook 6", "modern": "Jupyter Server 2"}


def routes_text(routes: list[str] | tuple[str, ...], *, short: bool = False) -> str:
    """The Colab routes a runtime serves, in words."""
    if short:
        return "+".join("direct" if r == "cors" else r for r in routes)
    names = [_ROUTE_NAMES.get(r, r) for r in routes]
    return " and ".join(names) + (" routes" if len(names) > 1 else " route only")


def up(out: Console, info: dict[str, Any], *, detached: bool) -> None:
    remote_port = info.get("remote_port", info["port"])
    remote = f"the remote's {remote_port}, " if remote_port != info["port"] else ""
    out.print(text((f"Runtime '{info['name']}' is up", "bold green"),
                   f" on {info['target']}, port {info['port']} "
                   f"({remote}forwarded to localhost:{info['port']})"))
    stack = info.get("stack", "classic")
    what = _STACK_NAMES.get(stack, stack)
    if stack == "colab-image":
        what = f"{info.get('jupyter', '')} in Docker"
    out.print(f"Serves Colab's {routes_text(info.get('routes', ['websocket', 'cors']))} "
              f"({stack} stack: {what}).")
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
    seconds = max(0, int(time.time() - since))  # a clock stepped back: not negative
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _idle(data: dict[str, Any]) -> str:
    """"3m, stop ~14:05" for a runtime with an idle stop; "busy" while something runs."""
    if "idle_seconds" not in data:
        return ""
    if data.get("busy") or data.get("connections"):
        return "busy" if data.get("busy") else "in use"
    text = _age(time.time() - data["idle_seconds"])
    if data.get("idle_stop_at"):
        text += f", stop ~{time.strftime('%H:%M', time.localtime(data['idle_stop_at']))}"
    return text


def runtimes(out: Console, source: Path, rows: list[RuntimeStatus]) -> None:
    table = Table(title=str(source), title_justify="left", box=None, pad_edge=False)
    idle = any(row.activity is not None for row in rows)
    columns = ("NAME", "KIND", "TARGET", "PORT", "STATE", "UP FOR", "HEALTH",
               *(("IDLE",) if idle else ()), "URL")
    for column in columns:
        table.add_column(column, no_wrap=column == "IDLE")
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
        if "routes" in data:  # the Colab routes it serves
            health_text += f" ({routes_text(data['routes'], short=True)})"
        if row.state == "preempted":
            health_text = data.get("ended", "")
        table.add_row(row.profile.name, row.profile.kind, row.profile.target,
                      str(data.get("port", row.profile.jupyter.port)), state_text,
                      _age(data["since"]) if "since" in data else "", health_text,
                      *((_idle(data),) if idle else ()), data.get("url", ""))
    out.print(table)
    if not rows:
        out.print("no profiles yet: see profiles.example.yaml")


def status(out: Console, row: RuntimeStatus) -> None:
    """`status NAME`: the health report, the GPU, the idle time."""
    assert row.health is not None
    health_report(out, row.profile.name, row.health)
    if row.gpu is not None:
        mark = ("ok  ", "green") if row.gpu_ok else ("FAIL", "red")
        out.print(text("  ", mark, f" {'gpu':<10} {row.gpu}"))
    if row.activity is not None:
        out.print(f"  idle: {_idle(row.to_dict())}")


def health_report(out: Console, name: str, report: HealthReport) -> None:
    verdict = ("healthy", "green") if report.ok else ("unhealthy", "red")
    out.print(text(f"runtime '{name}' ({report.url}): ", verdict))
    out.print(f"  serves Colab's {routes_text(report.routes)}")
    for check in report.checks:
        mark = ("ok  ", "green") if check.ok else ("FAIL", "red")
        out.print(text("  ", mark, f" {check.name:<10} {check.detail}"))


def connection(out: Console, conn: Connection) -> None:
    """`profiles show`: the route hop by hop, keys in the order offered, host-key files."""
    def line(label: str, value: object) -> None:
        out.print(f"  {label:<19} {value}")

    out.print(text((conn.name, "bold"), f" (resolved by {conn.source})"))
    target = conn.target
    if target is not None:
        line("hostname", target.hostname)
        line("port", target.port)
        line("user", target.user)
    for number, key in enumerate(conn.identity_files, start=1):
        detail = (key.key_type or "present") if key.exists else "absent"
        mark = ", the profile's" if key.from_profile else ""
        line("identity file" if number == 1 else "", f"{number}. {key.path} ({detail}{mark})")
    for cert in conn.certificate_files:
        line("certificate", f"{cert.path} ({'present' if cert.exists else 'absent'})")
    if conn.route:
        line("agent", conn.agent)
        line("identities only", "yes" if conn.identities_only else "no")
        line("authentication", ", ".join(conn.auth_methods) +
             (" (BatchMode: no prompts)" if conn.batch_mode else ""))
    for number, hop in enumerate(conn.route, start=1):
        label = "route" if number == 1 else ""
        line(label, f"{number}. {hop.user}@{hop.hostname}:{hop.port} ({hop.name}), {hop.via}")
        line("", f"   host key checked as {hop.host_key_name} in "
             f"{', '.join(hop.known_hosts) or 'no user file'}")
        record = hop.records_to or "nowhere (UserKnownHostsFile none)"
        line("", f"   StrictHostKeyChecking {hop.strict_host_key_checking}; "
             f"a new host key is recorded in {record}")
    if conn.route:
        line("global known_hosts", ", ".join(conn.global_known_hosts) or "none")
        line("hash known_hosts", "yes" if conn.hash_known_hosts else "no")
    for note in conn.notes:
        out.print(text(("note:", "yellow"), f" {note}"))
