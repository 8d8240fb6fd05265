"""The typer CLI: commands translate arguments, the core returns data.

Only this module knows about typer and the terminal. Errors are turned into
one line (plus a hint) and an exit status in one place, `main()`; unexpected
failures write their traceback to a log file, never to the screen.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import click
import typer
from rich.console import Console

from . import __version__, paths, profiles, state
from .errors import ExitCode, RemoteRuntimeError, SSHError
from .jupyter import COLAB_ORIGIN, redact
from .runtime import Runtime, RuntimeInfo

app = typer.Typer(
    name="remote-runtime",
    help="Give the Colab web frontend a runtime on a machine you control.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # tokens must never land in a traceback
    add_completion=False,
)
profiles_app = typer.Typer(help="Inspect and validate the profiles file.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ProfilesOpt = Annotated[
    Path | None,
    typer.Option("--profiles", help="Profiles file (default: $REMOTE_RUNTIME_PROFILES, "
                 "then ~/.config/remote-runtime/profiles.yaml).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

BROWSER_HELP = f"""\
In Colab ({COLAB_ORIGIN}): Connect (top right) > "Connect to a local runtime",
paste the URL above, then Connect.
  Chrome/Edge: when the site asks to "access other apps and services on this device"
    (local network access), click Allow; without it the connection is blocked.
  Firefox: in about:config set network.websocket.allowInsecureFromHTTPS to true.
  Safari and Brave shields may block the connection to localhost."""


def _progress(message: str) -> None:
    err.print(f"[dim]-[/dim] {message}")


def _passphrase(path: Path) -> str:
    return getpass.getpass(f"passphrase for {path}: ")


def _prompt_if_tty() -> Any:
    return _passphrase if sys.stdin.isatty() else None


@contextlib.contextmanager
def _signals_raise_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop `up` exactly like Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C only says so."""

    def handler(signum: int, frame: FrameType | None) -> None:
        err.print("[yellow]tearing down, please wait...[/yellow]")

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _render_up(info: RuntimeInfo) -> None:
    out.print(f"[bold green]Runtime '{info.name}' is up[/bold green] "
              f"on {info.target}, port {info.port} (forwarded to localhost:{info.port})")
    for note in info.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    out.print()
    out.print(f"  [bold]{info.url}[/bold]")
    out.print()
    out.print(BROWSER_HELP)
    out.print()
    out.print("Press Ctrl-C to stop: the remote server, its kernels and the tunnel are torn down.")


@app.command()
def up(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="Port to use on both ends (fails if taken).")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, help="Seconds to wait for the runtime to become healthy.")] = 180.0,
    accept_new_host_key: Annotated[bool, typer.Option(
        "--accept-new-host-key", help="Record an unknown host key (never a changed one).")] = False,
    profiles_path: ProfilesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a Colab runtime on NAME and forward it here, until Ctrl-C."""
    profile = profiles.load(profiles_path).get(name)
    runtime = Runtime(profile, port=port, timeout=timeout,
                      accept_new_host_key=accept_new_host_key,
                      progress=_progress, passphrase_prompt=_prompt_if_tty())
    stop = threading.Event()
    failure: RemoteRuntimeError | None = None
    interrupted_early = False
    try:
        with _signals_raise_interrupt():
            try:
                info = runtime.start()
            except KeyboardInterrupt:
                interrupted_early = True
            else:
                if as_json:
                    out.print_json(json.dumps(info.to_dict()))
                else:
                    _render_up(info)
                sys.stdout.flush()
                try:
                    runtime.wait(stop)
                except KeyboardInterrupt:
                    err.print()
                    err.print("stopping...")
                except SSHError as exc:
                    failure = exc
    finally:
        with _shielded():
            done = runtime.close()
        for line in done:
            err.print(f"[dim]-[/dim] {line}")
    if failure is not None:
        raise failure
    if interrupted_early:
        raise typer.Exit(ExitCode.INTERRUPTED)


@app.command("list")
def list_(
    profiles_path: ProfilesOpt = None,
    as_json: JsonOpt = False,
    show_token: Annotated[bool, typer.Option(
        "--show-token", help="Include tokens in URLs.")] = False,
) -> None:
    """List profiles and the runtimes that are up."""
    source = profiles.resolve_path(profiles_path)
    loaded = profiles.load(source)
    records, problems = state.read_all()
    rows = []
    for profile in loaded.profiles.values():
        record = records.get(profile.name)
        live = record is not None and record.alive
        row: dict[str, Any] = {
            "name": profile.name,
            "kind": profile.kind,
            "target": profile.target,
            "jupyter_port": profile.jupyter.port,
            "state": "up" if live else "down",
        }
        if record is not None and live:
            row.update(url=record.url if show_token else redact(record.url),
                       port=record.port, pid=record.pid, since=record.since)
        elif record is not None:
            row["stale"] = f"record left by pid {record.pid}, which is gone"
        rows.append(row)
    if as_json:
        out.print_json(json.dumps(rows))
    else:
        _render_list(source, rows)
    for problem in problems:
        err.print(f"[yellow]warning:[/yellow] {problem}")


def _render_list(source: Path, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=str(source), title_justify="left", box=None, pad_edge=False)
    for column in ("NAME", "KIND", "TARGET", "PORT", "STATE", "URL"):
        table.add_column(column)
    for row in rows:
        state_text = row["state"] + (" (stale)" if "stale" in row else "")
        table.add_row(row["name"], row["kind"], row["target"],
                      str(row.get("port", row["jupyter_port"])), state_text, row.get("url", ""))
    out.print(table)
    if not rows:
        out.print("no profiles yet: see profiles.example.yaml")


@profiles_app.command("check")
def profiles_check(profiles_path: ProfilesOpt = None) -> None:
    """Validate the profiles file; exit non-zero on any problem."""
    source = profiles.resolve_path(profiles_path)
    result, problems = profiles.validate(source)
    if problems:
        for problem in problems:
            err.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(ExitCode.PROFILE)
    names = ", ".join(result.profiles) or "none"
    out.print(f"{source}: {len(result.profiles)} profile(s) OK ({names})")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False,
) -> None:
    if version:
        out.print(f"remote-runtime {__version__}")
        raise typer.Exit(0)


def _log_unexpected(exc: BaseException) -> Path | None:
    try:
        log = paths.ensure_private_dir(paths.log_dir()) / "errors.log"
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} remote-runtime "
                         f"{__version__} {sys.argv[1:2]}\n")
            handle.write("".join(traceback.format_exception(exc)))
        return log
    except OSError:
        return None


def report(exc: RemoteRuntimeError) -> int:
    """Print one line (and a hint) for an error; return its exit status."""
    err.print(f"[red]error:[/red] {exc.message}", markup=True)
    if exc.details:
        err.print(exc.details, markup=False)
    if exc.hint:
        err.print(f"[dim]hint:[/dim] {exc.hint}")
    return int(exc.exit_code)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map every outcome to an exit status."""
    try:
        result = app(args=argv, prog_name="remote-runtime", standalone_mode=False)
    except RemoteRuntimeError as exc:
        return report(exc)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        err.print(f"[red]error:[/red] {exc.format_message()}")
        if exc.ctx is not None:
            err.print(f"[dim]hint:[/dim] see '{exc.ctx.command_path} --help'")
        return int(ExitCode.USAGE)
    except click.ClickException as exc:
        err.print(f"[red]error:[/red] {exc.format_message()}")
        return int(ExitCode.USAGE)
    except (click.Abort, KeyboardInterrupt):
        err.print("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a line
        log = _log_unexpected(exc)
        where = f"; details in {log}" if log else ""
        err.print(f"[red]error:[/red] unexpected {type(exc).__name__}: {exc}{where}")
        return int(ExitCode.ERROR)
    return int(result) if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()


__all__ = ["app", "main"]
