"""The typer commands: each translates its arguments, calls the core, renders the result.

Only the `cli` package knows about typer and the terminal. Errors are not
handled here: they leave the command and `exits.main()` turns them into one
line and an exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__, command, control, profiles, supervisor, teardown
from ..detach import spawn as spawn_supervisor
from ..errors import ExitCode, RemoteRuntimeError, UsageError
from ..options import DEFAULT_TIMEOUT, UpOptions
from ..runtime import Runtime
from . import interrupts, render
from .params import AcceptOpt, JsonOpt, PortOpt, ProfilesOpt, TimeoutOpt
from .progress import ProgressView
from .prompts import terminal_prompter

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

# Every command's progress callback: lines, and an install as one updating bar.
progress = ProgressView(lambda: err)


def _teardown(runtime: Runtime) -> None:
    """Close the runtime where no signal can cut the teardown short; say what was done."""
    progress.finish()
    with interrupts.shielded(_tearing_down):
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
    profile = loaded.to_start(name)  # a {run} profile: a new runtime PROFILE-SUFFIX
    options = UpOptions(port=port, timeout=timeout, accept_new_host_key=accept_new_host_key)
    if detach:
        info = spawn_supervisor(profile.name, loaded.path, options, progress,
                                terminal_prompter())
        if as_json:
            out.print_json(json.dumps(info))
        else:
            render.up(out, info, detached=True)
        return
    runtime = Runtime(profile, options, progress=progress, prompter=terminal_prompter())
    _hold_foreground(runtime, as_json=as_json)


def _hold_foreground(runtime: Runtime, *, as_json: bool) -> None:
    """Start, print the URL, wait for Ctrl-C (or another stopping signal, or `down`) or a
    failure; always tear down."""
    stop = threading.Event()
    failure: RemoteRuntimeError | None = None
    up = interrupted_early = False
    with interrupts.holding(_tearing_down, runtime.profile.name) as signals:
        try:
            try:
                data = runtime.start().to_dict(show_token=True)
                up = True
                if as_json:  # a Ctrl-C while the URL prints is a normal stop too
                    out.print_json(json.dumps(data))
                else:
                    render.up(out, data, detached=False)
                sys.stdout.flush()
                runtime.wait(stop)
                if runtime.ended:
                    err.print(runtime.ended)
            finally:
                signals.shield()
        except KeyboardInterrupt:
            if up:
                err.print()
                err.print("stopping...")
            else:
                interrupted_early = True
        except RemoteRuntimeError as exc:  # raised once torn down
            failure = exc
        finally:
            _teardown(runtime)
    if failure is not None:
        raise failure
    if interrupted_early:
        raise typer.Exit(ExitCode.INTERRUPTED)


def _tearing_down() -> None:
    """What a signal during teardown prints: once, however many signals come."""
    if not _said_tearing_down:
        _said_tearing_down.append(True)
        err.print(render.text(("tearing down, please wait...", "yellow")))


_said_tearing_down: list[bool] = []


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
        render.status(out, row)
    if not row.health.ok or row.gpu_ok is False:
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
    warnings: list[str] = []
    if all_:
        results, warnings = teardown.down_all(loaded, progress)
        if not results:
            out.print("no runtimes are up")
    else:
        assert name is not None
        results = teardown.down_named(loaded, name, progress)
    for warning in warnings:
        err.print(render.text(("warning:", "yellow"), f" {warning}"))
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
    profile = profiles.load(profiles_path).to_start(name)
    options = UpOptions(port=port, timeout=timeout, accept_new_host_key=accept_new_host_key)
    runtime = Runtime(profile, options, progress=progress, prompter=terminal_prompter())
    status_code: int = ExitCode.INTERRUPTED
    with interrupts.holding(_tearing_down, profile.name) as signals:
        try:
            try:
                status_code = command.run(runtime, argv, progress)
            finally:
                signals.shield()
        except KeyboardInterrupt:  # before the command started
            status_code = ExitCode.INTERRUPTED
        finally:
            _teardown(runtime)
    raise typer.Exit(status_code)


@app.command("exec")
def exec_(
    name: Annotated[str, typer.Argument(help="Runtime (profile) name.")],
    notebook_paths: Annotated[list[Path], typer.Argument(
        metavar="NOTEBOOK...", help="Notebooks to run, in this order.")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", "-o", help="Write the executed notebooks here (default: "
        "NAME.executed.ipynb beside each).")] = None,
    parameter: Annotated[list[str] | None, typer.Option(
        "--parameter", "-p", metavar="KEY=VALUE",
        help="Inject KEY=VALUE after the cell tagged 'parameters' (repeatable).")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=1, help="Seconds each cell may run (default: no limit).")] = None,
    kernel: Annotated[str | None, typer.Option(
        "--kernel", help="Kernelspec to run (default: the runtime's default, the "
        "remote user's Python).")] = None,
    accept_new_host_key: AcceptOpt = False,
    profiles_path: ProfilesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run notebooks cell by cell on NAME (brought up for it, or the one that is up).

    Exits 0 only when every cell ran; a failing cell is named and what ran is written.
    """
    from .. import notebooks
    from .exec_view import ExecView, summary

    profile = profiles.load(profiles_path).to_start(name)  # {run}: a new runtime
    try:
        parameters = notebooks.parse_parameters(parameter or [])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    jobs = notebooks.plan(notebook_paths, out_dir, parameters)
    record = notebooks.running(profile)
    runtime = None if record is not None else Runtime(
        profile, UpOptions(accept_new_host_key=accept_new_host_key), progress=progress,
        prompter=terminal_prompter())
    report = None
    try:
        owned = runtime.profile.name if runtime is not None else None  # `down` stops it
        with interrupts.terminate_as_interrupt(owned), ExecView(err) as view, \
                contextlib.suppress(KeyboardInterrupt):  # before the notebooks ran: no report
            report = notebooks.on_runtime(jobs, runtime=runtime, record=record, kernel=kernel,
                                          cell_timeout=timeout, observer=view,
                                          progress=progress)
    finally:
        if runtime is not None:
            _teardown(runtime)
    if report is None:
        raise typer.Exit(ExitCode.INTERRUPTED)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        summary(out, report)
    if report.interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)
    failure = report.error()
    if failure is not None:
        raise failure


@app.command()
def doctor(
    name: Annotated[str | None, typer.Argument(
        help="Profile to check (none: only this machine, or --url).")] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="Check a runtime started some other way, by the URL Colab is given "
        "(its token may come from $JUPYTER_TOKEN instead).")] = None,
    port: PortOpt = None,
    no_start: Annotated[bool, typer.Option(
        "--no-start", help="Do not start a short runtime for the route checks.")] = False,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    accept_new_host_key: Annotated[bool, typer.Option(
        "--accept-new-host-key", help="Check as `up --accept-new-host-key` would "
        "(nothing is recorded).")] = False,
    profiles_path: ProfilesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check each link between Colab and the runtime; say which is broken and how to fix it.

    Exits with the first failing stage's code (README, Exit codes); nothing is left running.
    """
    from .. import doctor as core
    from . import doctor_view

    options = core.Options(name=name, profiles_path=profiles_path, url=url,
                           token=os.environ.get("JUPYTER_TOKEN") or None, port=port,
                           accept_new_host_key=accept_new_host_key, start_runtime=not no_start,
                           timeout=timeout)
    if not as_json:
        doctor_view.header(out, name)
    walk = core.start(options, progress=progress, prompter=terminal_prompter(),
                      on_check=None if as_json else lambda c: doctor_view.check_line(out, c))
    try:
        with interrupts.terminate_as_interrupt(name):
            report = core.walk_links(walk)
    finally:
        progress.finish()
        with interrupts.shielded(
                lambda: err.print(render.text(("cleaning up, please wait...", "yellow")))):
            walk.close()
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        doctor_view.verdict(out, report)
    raise typer.Exit(report.exit_code)


@app.command("_supervise", hidden=True)
def supervise_(
    name: str,
    options: Annotated[str, typer.Option("--options", help="UpOptions as JSON.")] = "{}",
    profiles_path: ProfilesOpt = None,
    relay_prompts: Annotated[bool, typer.Option("--relay-prompts")] = False,
) -> None:
    """Internal: the background supervisor of a detached runtime."""
    profile = profiles.load(profiles_path).get(name)
    raise typer.Exit(supervisor.supervise(profile, UpOptions.from_json(options),
                                          relay_prompts=relay_prompts))


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


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    profiles_path: ProfilesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the effective SSH connection, resolved as OpenSSH would (no connection made)."""
    connection = control.show_profile(profiles.load(profiles_path), name)
    if as_json:
        out.print_json(json.dumps(connection.to_dict()))
    else:
        render.connection(out, connection)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False,
) -> None:
    if version:
        out.print(f"remote-runtime {__version__}")
        raise typer.Exit(0)
