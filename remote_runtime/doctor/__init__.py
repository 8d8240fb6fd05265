"""`remote-runtime doctor`: walk every link between Colab and the runtime, in order, and
say which one is broken and how to fix it. Returns data (a `Report`); prints nothing.

  report     Check, Stage, Report: the result, and the exit code of the first failing stage
  walk       Options, and the Walk: what the stages found so far, what to close at the end
  profile    the profiles file, the profile, the effective SSH settings
  cloud      GCE: credentials, project, instance, the key in metadata, host keys, address
  reach      DNS and TCP, ProxyCommand (IAP), ProxyJump: the SSH server answers
  handshake  the handshake, the host key, the auth methods, which key is accepted
  remote     Python, the server stack and its routes, venv, the kernel's Python and its
             ipykernel, ports, disk
  local      the local port (free, ours, or whose), loopback IPv4 and IPv6, localhost
  routes     both Colab routes from both origins, to a kernel, through a runtime
  browser    what the browsers found here need (local network access, Firefox's pref)

The doctor records no host key, starts no VM, pushes no key and installs nothing; the
only thing it starts is a short runtime for the route checks (when none is up), torn
down before it returns.
"""

from __future__ import annotations

from collections.abc import Callable

from ..options import Progress, quiet
from ..ssh import Prompter
from . import browser, cloud, handshake, local, profile, reach, remote, routes
from .remote import STACK_CHECKS
from .report import FAILED, OK, SKIPPED, STAGES, WARNING, Check, Report, Stage
from .walk import Options, Walk

__all__ = [
    "FAILED",
    "OK",
    "SKIPPED",
    "STACK_CHECKS",
    "STAGES",
    "WARNING",
    "Check",
    "Options",
    "Report",
    "Stage",
    "Walk",
    "diagnose",
    "start",
    "walk_links",
]


def start(options: Options, *, progress: Progress = quiet, prompter: Prompter | None = None,
          on_check: Callable[[Check], None] | None = None,
          environ: dict[str, str] | None = None) -> Walk:
    """A walk to run with `walk_links` and close (always) with `close()`."""
    report = Report(options.name, on_check=on_check)
    return Walk(options, report=report, progress=progress, prompter=prompter,
                environ=environ)


def walk_links(walk: Walk) -> Report:
    """Every stage in order; the walk stays open (the caller closes it)."""
    profile.run(walk)
    cloud.run(walk)
    reach.run(walk)
    handshake.run(walk)
    remote.run(walk)
    if walk.session is not None:  # the route checks open their own connection
        walk.session.close()
    local.run(walk)
    routes.run(walk)
    browser.run(walk)
    return walk.report


def diagnose(options: Options, **kwargs: object) -> Report:
    """`start`, `walk_links` and `close` in one call (the Python API, tests)."""
    with start(options, **kwargs) as walk:  # type: ignore[arg-type]
        return walk_links(walk)
