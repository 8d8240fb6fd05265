"""The one place that turns every outcome of a command into a line and an exit status.

`main()` runs the typer app; a `RemoteRuntimeError` becomes one line (plus a
hint), usage errors exit 2, Ctrl-C 130, and an unexpected exception writes its
traceback to a log file, never to the screen.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from pathlib import Path

import typer

try:  # typer >= 0.2x vendors click as typer._click and raises its exceptions
    from typer._click import exceptions as click_exc
except ImportError:  # older typer: the click package
    from click import exceptions as click_exc  # type: ignore[no-redef]

from .. import __version__, paths
from ..errors import ExitCode, RemoteRuntimeError
from .app import app, err, progress
from .render import text


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
    err.print(text(("error:", "red"), f" {exc.message}"))
    if exc.details:
        err.print(exc.details)
    if exc.hint:
        err.print(text(("hint:", "dim"), f" {exc.hint}"))
    return int(exc.exit_code)


def _raise_fd_limit() -> None:
    """Each forwarded connection holds a socket: lift the soft open-file limit toward
    the hard one (macOS starts at 256, which would cap Colab's connections). Windows has
    no such limit on sockets (and no `resource` module)."""
    try:
        import resource
    except ImportError:
        return
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
        try:
            result = app(args=argv, prog_name="remote-runtime", standalone_mode=False)
        finally:
            progress.finish()  # an install bar ends where it stood, above any error
    except RemoteRuntimeError as exc:
        return report(exc)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except click_exc.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help text was the message
            return int(ExitCode.USAGE)
        err.print(text(("error:", "red"), f" {exc.format_message()}"))
        if exc.ctx is not None:
            err.print(text(("hint:", "dim"), f" see '{exc.ctx.command_path} --help'"))
        return int(ExitCode.USAGE)
    except click_exc.ClickException as exc:
        err.print(text(("error:", "red"), f" {exc.format_message()}"))
        return int(ExitCode.USAGE)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a line
        log = _log_unexpected(exc)
        where = f"; details in {log}" if log else ""
        err.print(text(("error:", "red"), f" unexpected {type(exc).__name__}: {exc}{where}"))
        return int(ExitCode.ERROR)
    return int(result) if isinstance(result, int) else 0
