"""A small Python API for scripts and notebooks' CI.

    from remote_runtime import api

    with api.up("my-gce-vm") as rt:
        print(rt.url, rt.port, rt.token)
        ...  # talk to the runtime
    # torn down here, whatever happened inside
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from . import profiles as profiles_mod
from .options import DEFAULT_TIMEOUT, UpOptions, quiet
from .runtime import Runtime, RuntimeInfo


@contextlib.contextmanager
def up(
    name: str,
    *,
    profiles: Path | str | None = None,
    port: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    accept_new_host_key: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Iterator[RuntimeInfo]:
    """Bring profile `name` up for the duration of the `with` block.

    Yields a RuntimeInfo (`url`, `port`, `token`, `health`, ...). Raises a
    `remote_runtime.errors.RemoteRuntimeError` subclass when it cannot.
    """
    profile = profiles_mod.load(profiles).to_start(name)  # {run}: a new runtime
    options = UpOptions(port=port, timeout=timeout, accept_new_host_key=accept_new_host_key)
    with Runtime(profile, options, progress=progress or quiet) as runtime:
        assert runtime.info is not None
        yield runtime.info
