"""`remote-runtime run NAME -- CMD`: a local command run against a runtime (the CI entry point).

The command gets the runtime in its environment (`REMOTE_RUNTIME_URL`,
`_TOKEN`, `_PORT`, `_NAME`) and its exit status becomes ours, as a shell
reports it (128+N when signal N ended it). The caller tears the runtime down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from . import procs
from .errors import CommandNotRunnable, ExitCode
from .options import Progress
from .runtime import Runtime, RuntimeInfo

CHILD_STOP_TIMEOUT = 10.0
WAIT_SLICE = 0.5  # the main thread wakes this often, so a stop request's interrupt lands


def environment(info: RuntimeInfo) -> dict[str, str]:
    """This process's environment plus what the command needs to reach the runtime."""
    return dict(os.environ, REMOTE_RUNTIME_URL=info.url, REMOTE_RUNTIME_TOKEN=info.token,
                REMOTE_RUNTIME_PORT=str(info.port), REMOTE_RUNTIME_NAME=info.name)


def run(runtime: Runtime, argv: list[str], progress: Progress) -> int:
    """Start `runtime`, run `argv` against it, return its exit status.

    A KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the caller) stops
    the command and returns 130; the runtime is left for the caller to close.
    """
    child: subprocess.Popen[bytes] | None = None
    try:
        info = runtime.start()
        progress(f"runtime up on port {info.port}; running: {' '.join(argv)}")
        try:
            child = subprocess.Popen(program(argv), env=environment(info))
        except OSError as exc:
            raise CommandNotRunnable(f"cannot run {argv[0]!r}: {exc.strerror}") from None
        status = _wait(child)
    except KeyboardInterrupt:
        if child is not None:
            procs.stop_child(child, timeout=CHILD_STOP_TIMEOUT)
        return int(ExitCode.INTERRUPTED)
    return 128 - status if status < 0 else status


def program(argv: list[str], *, windows: bool = sys.platform == "win32") -> list[str]:
    """`argv` with its program found as a shell would find it. On Windows CreateProcess
    only tries `.exe`: `npm`, `gcloud` and other `.cmd`/`.bat` scripts are found on PATH
    with PATHEXT first. POSIX exec already searches PATH."""
    if not windows or not argv:
        return argv
    found = shutil.which(argv[0])
    return [found, *argv[1:]] if found else argv


def _wait(child: subprocess.Popen[bytes]) -> int:
    """The child's status; waits in slices, so an interrupt raised from another thread
    (a stop request, `interrupts`) reaches this thread while the child runs."""
    while True:
        try:
            return child.wait(timeout=WAIT_SLICE)
        except subprocess.TimeoutExpired:
            continue
