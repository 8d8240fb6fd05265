"""The command-line options several commands share (typer `Annotated` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import paths

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
