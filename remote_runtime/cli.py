"""The typer CLI: commands translate arguments, the core returns data.

Only this module knows about typer and the terminal. Errors are turned into
one line (plus a hint) and an exit status in one place, `main()`; unexpected
failures write their traceback to a log file, never to the screen.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import resource
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

try:  # typer >= 0.2x vendors click as typer._click and raises its exceptions
    from typer._click import exceptions as click_exc
except ImportError:  # older typer: the click package
    from click import exceptions as click_exc  # type: ignore[no-redef]
from . import __version__, control, interrupts, paths, profiles, render, supervisor
from .errors import CloudError, ExitCode, RemoteRuntimeError
from .runtime import Runtime

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
PortOpt = Annotated[int | None, typer.Option(
    "--port", min=1, max=65535, help="Port to use on both ends (fails if taken).")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=1, help="Seconds to wait for the runtime to become healthy.")]
AcceptOpt = Annotated[bool, typer.Option(
    "--accept-new-host-key", help="Record an unknown host key (never a changed one).")]

def _progress(message: str) -> None:
    err.print(f"[dim]-[/dim] {message}")


def _passphrase(path: Path) -> str:
    return getpass.getpass(f"passphrase for {path}: ")


def _prompt_if_tty() -> Any:
    return _passphrase if sys.stdin.isatty() else None


def _teardown(runtime: Runtime) -> None:
    """Close the runtime where no signal can cut the teardown short; say what was done."""
    with interrupts.shielded(lambda: err.print("[yellow]tearing down, please wait...[/yellow]")):
        done = runtime.close()
    for line in done:
        err.print(f"[dim]-[/dim] {line}")


@app.command()
def up(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    port: PortOpt = None,
    timeout: TimeoutOpt = 180.0,
    accept_new_host_key: AcceptOpt = False,
    detach: Annotated[bool, typer.Option(
        "--detach", "-d",
        help="Return once healthy; a background supervisor keeps it up.")] = False,
    profiles_path: ProfilesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a Colab runtime on NAME and forward it here (until Ctrl-C, or --detach)."""
    loaded = profiles.load(profiles_path)
    profile = loaded.get(name)
    if detach:
        info = supervisor.spawn(name, loaded.path, port=port, timeout=timeout,
                                accept_new_host_key=accept_new_host_key, progress=_progress)
        if as_json:
            out.print_json(json.dumps(info))
        else:
            render.up(out, info, detached=True)
        return
    runtime = Runtime(profile, port=port, timeout=timeout,
                      accept_new_host_key=accept_new_host_key,
                      progress=_progress, passphrase_prompt=_prompt_if_tty())
    _hold_foreground(runtime, as_json=as_json)


def _hold_foreground(runtime: Runtime, *, as_json: bool) -> None:
    """Start, print the URL, wait for Ctrl-C/SIGTERM/SIGHUP or a failure; always tear down."""
    stop = threading.Event()
    failure: RemoteRuntimeError | None = None
    interrupted_early = False
    try:
        with interrupts.terminate_as_interrupt():
            try:
                data = runtime.start().to_dict()
            except KeyboardInterrupt:
                interrupted_early = True
            else:
                try:  # a Ctrl-C while the URL prints is a normal stop too
                    if as_json:
                        out.print_json(json.dumps(data))
                    else:
                        render.up(out, data, detached=False)
                    sys.stdout.flush()
                    runtime.wait(stop)
                except KeyboardInterrupt:
                    err.print()
                    err.print("stopping...")
                except RemoteRuntimeError as exc:
                    failure = exc
    finally:
        _teardown(runtime)
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
    refresh: Annotated[bool, typer.Option(
        "--refresh", help="Ask the cloud API for each GCE instance's live status.")] = False,
) -> None:
    """List profiles and the state of their runtimes (with a quick health check)."""
    loaded = profiles.load(profiles_path)
    rows, problems = control.list_runtimes(loaded)
    if refresh:
        for row in rows:
            if row.profile.gce is not None:
                row.live_status = _live_status(row.profile)
    if as_json:
        out.print_json(json.dumps([row.to_dict(show_token=show_token) for row in rows]))
    else:
        render.runtimes(out, loaded.path, rows)
    for problem in problems:
        err.print(f"[yellow]warning:[/yellow] {problem}")


def _live_status(profile: profiles.Profile) -> str:
    try:
        from .providers.gce import live_status

        return str(live_status(profile))
    except CloudError as exc:
        return f"unknown ({exc.message})"


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="Runtime (profile) name.")],
    profiles_path: ProfilesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the full health check now; exit 0 only when healthy."""
    row = control.status(profiles.load(profiles_path), name)
    assert row.health is not None
    if as_json:
        out.print_json(json.dumps(row.to_dict()))
    else:
        render.health_report(out, name, row.health)
    if not row.health.ok:
        raise typer.Exit(ExitCode.HEALTH)


@app.command()
def down(
    name: Annotated[str | None, typer.Argument(help="Runtime (profile) name.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Tear down every runtime.")] = False,
    profiles_path: ProfilesOpt = None,
) -> None:
    """Tear a runtime down from any terminal (and clean up after a dead one)."""
    if (name is None) == (not all_):
        raise click_exc.UsageError("give a runtime name or --all, not both")
    loaded = profiles.load(profiles_path)
    if all_:
        results = control.down_all(loaded, _progress)
        if not results:
            out.print("no runtimes are up")
    else:
        assert name is not None
        results = {name: control.down(loaded, name, _progress)}
    for runtime_name, done in results.items():
        out.print(f"runtime '{runtime_name}' is down")
        for line in done:
            err.print(f"[dim]-[/dim] {line}")


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Runtime (profile) name.")],
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Lines to show.")] = 200,
    profiles_path: ProfilesOpt = None,
) -> None:
    """Show the remote Jupyter server's log (the token is hidden)."""
    with contextlib.suppress(KeyboardInterrupt):  # the way to end --follow
        control.logs(profiles.load(profiles_path), name, follow=follow, lines=lines,
                     write=lambda line: out.print(line, markup=False, highlight=False))


@app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="Runtime (profile) name.")],
    command: Annotated[list[str], typer.Argument(help="Command to run (after --).")],
    port: PortOpt = None,
    timeout: TimeoutOpt = 180.0,
    accept_new_host_key: AcceptOpt = False,
    profiles_path: ProfilesOpt = None,
) -> None:
    """Bring NAME up, run COMMAND with REMOTE_RUNTIME_URL/TOKEN/PORT set, tear down.

    Exits with the command's exit status; teardown happens on every path.
    """
    profile = profiles.load(profiles_path).get(name)
    runtime = Runtime(profile, port=port, timeout=timeout,
                      accept_new_host_key=accept_new_host_key, progress=_progress,
                      passphrase_prompt=_prompt_if_tty())
    status_code: int = ExitCode.INTERRUPTED
    child: subprocess.Popen[bytes] | None = None
    try:
        with interrupts.terminate_as_interrupt():
            try:
                info = runtime.start()
                env = dict(os.environ, REMOTE_RUNTIME_URL=info.url,
                           REMOTE_RUNTIME_TOKEN=info.token, REMOTE_RUNTIME_PORT=str(info.port),
                           REMOTE_RUNTIME_NAME=info.name)
                _progress(f"runtime up on port {info.port}; running: {' '.join(command)}")
                try:
                    child = subprocess.Popen(command, env=env)
                except OSError as exc:
                    raise CommandNotRunnable(f"cannot run {command[0]!r}: {exc.strerror}") from None
                status_code = child.wait()
            except KeyboardInterrupt:
                if child is not None and child.poll() is None:
                    child.terminate()
                    try:
                        child.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
                status_code = ExitCode.INTERRUPTED
    finally:
        _teardown(runtime)
    if status_code < 0:  # killed by a signal: report it as a shell would
        status_code = 128 - status_code
    raise typer.Exit(status_code)


class CommandNotRunnable(RemoteRuntimeError):
    exit_code = ExitCode.COMMAND_NOT_FOUND


@app.command("_supervise", hidden=True)
def supervise_(
    name: str,
    port: PortOpt = None,
    timeout: TimeoutOpt = 180.0,
    accept_new_host_key: AcceptOpt = False,
    profiles_path: ProfilesOpt = None,
) -> None:
    """Internal: the background supervisor of a detached runtime."""
    profile = profiles.load(profiles_path).get(name)
    raise typer.Exit(supervisor.supervise(profile, port=port, timeout=timeout,
                                          accept_new_host_key=accept_new_host_key))


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


def _raise_fd_limit() -> None:
    """Each forwarded connection holds a socket: lift the soft open-file limit toward
    the hard one (macOS starts at 256, which would cap Colab's connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    for target in (cap, 10240):  # macOS refuses more than OPEN_MAX (10240)
        if soft >= target:
            return
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one return per outcome
    """Entry point: run the CLI and map every outcome to an exit status."""
    _raise_fd_limit()
    try:
        result = app(args=argv, prog_name="remote-runtime", standalone_mode=False)
    except RemoteRuntimeError as exc:
        return report(exc)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except click_exc.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help text was the message
            return int(ExitCode.USAGE)
        err.print(f"[red]error:[/red] {exc.format_message()}")
        if exc.ctx is not None:
            err.print(f"[dim]hint:[/dim] see '{exc.ctx.command_path} --help'")
        return int(ExitCode.USAGE)
    except click_exc.ClickException as exc:
        err.print(f"[red]error:[/red] {exc.format_message()}")
        return int(ExitCode.USAGE)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a line
        log = _log_unexpected(exc)
        where = f"; details in {log}" if log else ""
        err.print(f"[red]error:[/red] unexpected {type(exc).__name__}: {exc}{where}")
        return int(ExitCode.ERROR)
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["app", "main"]
