"""`remote-runtime run NAME -- CMD`: a local command run against a runtime (the CI entry point).

The command gets the runtime in its environment (`REMOTE_RUNTIME_URL`,
`_TOKEN`, `_PORT`, `_NAME`) and its exit status becomes ours, as a shell
reports it (128+N when signal N ended it). The caller tears the runtime down.
"""

from __future__ import annotations

import os
import subprocess

from . import procs
from .errors import CommandNotRunnable, ExitCode
from .options import Progress
from .runtime import Runtime, RuntimeInfo

CHILD_STOP_TIMEOUT = 10.0


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
            child = subprocess.Popen(argv, env=environment(info))
        except OSError as exc:
            raise CommandNotRunnable(f"cannot run {argv[0]!r}: {exc.strerror}") from None
        status = child.wait()
    except KeyboardInterrupt:
        if child is not None:
            procs.stop_child(child, timeout=CHILD_STOP_TIMEOUT)
        return int(ExitCode.INTERRUPTED)
    return 128 - status if status < 0 else status
