"""The typer commands: each translates its arguments, calls the core, renders the result.

Only the `cli` package knows about typer and the terminal. Errors are not
handled here: they leave the command and `exits.main()` turns them into one
line and an exit status.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import __version__, command, control, paths, profiles, supervisor
from ..errors import ExitCode, RemoteRuntimeError, UsageError
from ..options import DEFAULT_TIMEOUT, UpOptions
from ..runtime import Runtime
from . import interrupts, render

app = typer.Typer(
    name="remote-runtime",
    help="Give the Colab web frontend a runtime on a machine you control.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # tokens must never land in a traceback
    add_completion=False,
)
profiles_app = typer.Typer(help="Inspect and validate the profiles file.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")

out = render.console()
err = render.console(stderr=True)

ProfilesOpt = Annotated[
    Path | None,
    typer.Option("--profiles", help="Profiles file (default: $REMOTE_RUNTIME_PROFILES, "
                 f"then {paths.default_profiles_file()}).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PortOpt = Annotated[int | None, typer.Option(
    "--port", min=1, max=65535, help="Port to use on both ends (fails if taken).")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=1, help="Seconds to wait for the runtime to become healthy.")]
AcceptOpt = Annotated[bool, typer.Option(
    "--accept-new-host-key", help="Record an unknown host key (never a changed one).")]


def progress(message: str) -> None:
    err.print(render.text(("-", "dim"), f" {message}"))


def _passphrase(path: Path) -> str:
    return getpass.getpass(f"passphrase for {path}: ")


def _prompt_if_tty() -> Any:
    return _passphrase if sys.stdin.isatty() else None


def _confirm(question: str) -> bool:
    return typer.confirm(question, default=False, err=True)


def _confirm_if_tty() -> Any:
    """Asks before installing into the remote's Python; None (no terminal) makes it an error."""
    return _confirm if sys.stdin.isatty() else None


def _teardown(runtime: Runtime) -> None:
    """Close the runtime where no signal can cut the teardown short; say what was done."""
    with interrupts.shielded(
            lambda: err.print(render.text(("tearing down, please wait...", "yellow")))):
        done = runtime.close()
    for line in done:
        progress(line)


@app.command()
def up(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    port: PortOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
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
    options = UpOptions(port=port, timeout=timeout, accept_new_host_key=accept_new_host_key)
    if detach:
        info = supervisor.spawn(name, loaded.path, options, progress)
        if as_json:
            out.print_json(json.dumps(info))
        else:
            render.up(out, info, detached=True)
        return
    runtime = Runtime(profile, options, progress=progress, passphrase_prompt=_prompt_if_tty(),
                      confirm=_confirm_if_tty())
    _hold_foreground(runtime, as_json=as_json)


def _hold_foreground(runtime: Runtime, *, as_json: bool) -> None:
    """Start, print the URL, wait for Ctrl-C (or another stopping signal, or `down`) or a
    failure; always tear down."""
    stop = threading.Event()
    failure: RemoteRuntimeError | None = None
    interrupted_early = False
    try:
        with interrupts.terminate_as_interrupt(runtime.profile.name):
            try:
                data = runtime.start().to_dict(show_token=True)
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
    rows, problems = control.list_runtimes(loaded, refresh=refresh)
    if as_json:
        out.print_json(json.dumps([row.to_dict(show_token=show_token) for row in rows]))
    else:
        render.runtimes(out, loaded.path, rows)
    for problem in problems:
        err.print(render.text(("warning:", "yellow"), f" {problem}"))


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
        raise UsageError("give a runtime name or --all, not both",
                         hint="see 'remote-runtime down --help'")
    loaded = profiles.load(profiles_path)
    if all_:
        results = control.down_all(loaded, progress)
        if not results:
            out.print("no runtimes are up")
    else:
        assert name is not None
        results = {name: control.down(loaded, name, progress)}
    for runtime_name, done in results.items():
        out.print(f"runtime '{runtime_name}' is down")
        for line in done:
            progress(line)


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
                     write=out.print)


@app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="Runtime (profile) name.")],
    argv: Annotated[list[str], typer.Argument(metavar="COMMAND",
                                              help="Command to run (after --).")],
    port: PortOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    accept_new_host_key: AcceptOpt = False,
    profiles_path: ProfilesOpt = None,
) -> None:
    """Bring NAME up, run COMMAND with REMOTE_RUNTIME_URL/TOKEN/PORT set, tear down.

    Exits with the command's exit status; teardown happens on every path.
    """
    profile = profiles.load(profiles_path).get(name)
    options = UpOptions(port=port, timeout=timeout, accept_new_host_key=accept_new_host_key)
    runtime = Runtime(profile, options, progress=progress, passphrase_prompt=_prompt_if_tty(),
                      confirm=_confirm_if_tty())
    status_code: int = ExitCode.INTERRUPTED
    try:
        with interrupts.terminate_as_interrupt(name):
            try:
                status_code = command.run(runtime, argv, progress)
            except KeyboardInterrupt:  # before the command started
                status_code = ExitCode.INTERRUPTED
    finally:
        _teardown(runtime)
    raise typer.Exit(status_code)


@app.command("_supervise", hidden=True)
def supervise_(
    name: str,
    options: Annotated[str, typer.Option("--options", help="UpOptions as JSON.")] = "{}",
    profiles_path: ProfilesOpt = None,
) -> None:
    """Internal: the background supervisor of a detached runtime."""
    profile = profiles.load(profiles_path).get(name)
    raise typer.Exit(supervisor.supervise(profile, UpOptions.from_json(options)))


@profiles_app.command("check")
def profiles_check(profiles_path: ProfilesOpt = None) -> None:
    """Validate the profiles file; exit non-zero on any problem."""
    source = profiles.resolve_path(profiles_path)
    result, problems = profiles.validate(source)
    if problems:
        for problem in problems:
            err.print(render.text(("error:", "red"), f" {problem}"))
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
