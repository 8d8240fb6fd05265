"""What the doctor knows as it walks the links, and what it must close at the end.

Each stage reads what the stages before it found (the profile, the endpoint, the SSH
session, the remote probe) and adds its checks. Where a link fails, the links that
depend on it are skipped with the reason; the local side and the browser never depend
on the remote. Everything opened on the way (a ProxyCommand, the SSH connection, a
short runtime) is pushed on one undo stack and closed by `close()`.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..lifecycle import Closing, UndoStack
from ..options import DEFAULT_TIMEOUT, Progress, quiet
from ..ssh import Endpoint, Prompter, Session
from .report import FAILED, OK, SKIPPED, WARNING, Check, Report

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

if TYPE_CHECKING:
    from ..profiles import Profile
    from ..provision import ServerStack
    from ..remote import Probe
    from ..ssh.probe import Handshake, Link
    from ..stacks import Choice


@dataclass(frozen=True)
class Options:
    """What to check, from the command line."""

    name: str | None = None  # the profile (None: only this machine, and `url`)
    profiles_path: Path | None = None
    url: str | None = None  # a runtime started some other way (Google's manual recipe)
    token: str | None = None  # its token, when the URL has none
    port: int | None = None  # as `up --port`
    accept_new_host_key: bool = False  # as `up --accept-new-host-key` (nothing recorded)
    start_runtime: bool = True  # start a short runtime to check the routes, when none is up
    timeout: float = DEFAULT_TIMEOUT  # for that runtime to become healthy


class Walk(Closing):
    def __init__(self, options: Options, *, report: Report, progress: Progress = quiet,
                 prompter: Prompter | None = None, environ: dict[str, str] | None = None):
        self.options = options
        self.report = report
        self.progress = progress
        self.prompter = prompter
        self.environ = environ
        self.undo = UndoStack()
        self.profile: Profile | None = None
        self.endpoint: Endpoint | None = None
        self.link: Link | None = None
        self.shake: Handshake | None = None
        self.session: Session | None = None
        self.probe: Probe | None = None
        self.stack: ServerStack | Choice | None = None
        self.remote_free: list[int] | None = None  # candidate ports free on the remote
        # Why the links past the current one cannot be checked (None: they can).
        self.stopped: str | None = None
        self._say_skips = True  # one skipped line per stage that cannot run

    # --- checks ----------------------------------------------------------------------

    def add(self, stage: str, name: str, status: str, detail: str, fix: str = "") -> Check:
        return self.report.add(Check(stage, name, status, detail, fix))

    def ok(self, stage: str, name: str, detail: str) -> Check:
        return self.add(stage, name, OK, detail)

    def warn(self, stage: str, name: str, detail: str, fix: str = "") -> Check:
        return self.add(stage, name, WARNING, detail, fix)

    def fail(self, stage: str, name: str, detail: str, fix: str = "", *,
             stops: str | None = None) -> Check:
        """A failed link; `stops` says why the links that depend on it cannot be checked."""
        if stops is not None:
            self.stop(stops)
        return self.add(stage, name, FAILED, detail, fix)

    def stop(self, why: str, *, quietly: bool = False) -> None:
        """The links past this one cannot be checked; `quietly`: without a skipped line
        for each of them (they were never asked for)."""
        if self.stopped is None:
            self.stopped = why
            self._say_skips = not quietly

    def skip(self, stage: str, why: str | None = None) -> Check:
        return self.add(stage, "skipped", SKIPPED, why or self.stopped or "")

    def blocked(self, stage: str) -> bool:
        """True (and the stage shown as skipped) when an earlier link stopped the walk."""
        if self.stopped is None:
            return False
        if self._say_skips:
            self.skip(stage)
        return True

    # --- the port `up` would use ----------------------------------------------------

    @property
    def url_port(self) -> int | None:
        """The port of `--url` when it is a runtime URL on this machine (http, loopback)."""
        if self.options.url is None:
            return None
        try:
            parts = urllib.parse.urlsplit(self.options.url)
            port = parts.port
        except ValueError:
            return None
        if parts.scheme != "http" or (parts.hostname or "") not in LOOPBACK_NAMES:
            return None
        return port or None

    @property
    def port(self) -> tuple[int, bool]:
        """The port `up` would use, and whether it was asked for (then a taken port fails)."""
        if self.options.port is not None:
            return self.options.port, True
        if self.url_port is not None:
            return self.url_port, True
        if self.profile is not None:
            return self.profile.jupyter.port, self.profile.jupyter.port_explicit
        from ..profiles import DEFAULT_JUPYTER_PORT

        return DEFAULT_JUPYTER_PORT, False

    # --- teardown --------------------------------------------------------------------

    def closing(self, action: Callable[[], object]) -> None:
        """Run `action` when the walk ends (last pushed, first run); its failure is ignored."""
        def undo() -> list[str]:
            with contextlib.suppress(Exception):
                action()
            return []

        self.undo.push(undo)

    def close(self) -> list[str]:
        return self.undo.unwind()


__all__ = ["FAILED", "OK", "SKIPPED", "WARNING", "Options", "Walk"]
