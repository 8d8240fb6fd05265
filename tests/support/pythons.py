"""Python interpreters shaped like the ones real remotes have.

`without_venv` lays out a copy of this interpreter whose standard library lacks
`ensurepip`, as Debian and Ubuntu ship python3 until python3.X-venv is installed:
`python -m venv` then fails exactly as it does there ("ensurepip is not available").
The binary is copied (its RUNPATH still finds libpython), the standard library is
symlinked entry by entry, so it is the real interpreter with one module missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def without_venv(root: Path) -> Path:
    """A python3.X under `root` that cannot create venvs; its path."""
    base = Path(sys.base_prefix)
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (root / "bin").mkdir(parents=True)
    binary = root / "bin" / minor
    shutil.copy2(os.path.realpath(base / "bin" / minor), binary)
    stdlib = root / "lib" / minor
    stdlib.mkdir(parents=True)
    for entry in (base / "lib" / minor).iterdir():
        if entry.name not in ("ensurepip", "site-packages"):
            (stdlib / entry.name).symlink_to(entry)
    (stdlib / "site-packages").mkdir()
    for entry in (base / "lib").iterdir():  # libpython and friends, where RUNPATH is relative
        if entry.name != minor:
            (root / "lib" / entry.name).symlink_to(entry)
    return binary
