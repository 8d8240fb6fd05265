"""A local venv with a Colab-compatible Jupyter stack, built once and cached.

Tests that need a real classic Jupyter with `jupyter_http_over_ws` call
`stack_venv()`; `stack_venv(stack="modern")` gives a Jupyter Server 2. Both install
the shipped lock of this Python (`remote_runtime.stacks`), as the managed env does.
The venv lives under `$REMOTE_RUNTIME_TEST_CACHE` (or
`~/.cache/remote-runtime-tests`) so repeated runs reuse it; a stamp file is
written only after a complete build, and a file lock keeps concurrent builders
(pytest-xdist workers, parallel sessions) from racing each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

from remote_runtime import jupyter, stacks

BUILD_TIMEOUT = 600.0


def cache_root() -> Path:
    env = os.environ.get("REMOTE_RUNTIME_TEST_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "remote-runtime-tests"


def _stamp_text(reqs: Sequence[str], lock: stacks.Lock | None) -> str:
    what = f"lock={lock.stack}:{lock.digest}" if lock else f"reqs={' '.join(reqs)}"
    return f"format={stacks.ENV_FORMAT} python={sys.executable} {what}\n"


def venv_bin(venv_dir: Path, name: str) -> Path:
    return venv_dir / "bin" / name


def stack_venv(requirements: Sequence[str] | None = None, *, stack: str = "classic") -> Path:
    """Return the path of a venv holding `stack` (its lock for this Python), building
    it if needed. `requirements` replaces the lock, for tests that need a known-bad set."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    lock = None
    if requirements is None:
        lock = stacks.lock_for(stack, (sys.version_info[0], sys.version_info[1]))
        if lock is None:
            raise RuntimeError(f"no {stack} lock for Python {sys.version_info[:2]}")
        requirements = []
    stamp_text = _stamp_text(requirements, lock)
    # The stack key keeps a venv for another interpreter or requirement set apart.
    key = hashlib.sha256(stamp_text.encode()).hexdigest()[:10]
    venv_dir = root / f"stack-venv-{key}"
    stamp = venv_dir / ".remote-runtime-stamp"
    if _stamp_ok(stamp, stamp_text):
        return venv_dir
    with (root / f".stack-venv-{key}.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            if _stamp_ok(stamp, stamp_text):  # another builder finished first
                return venv_dir
            _build(venv_dir, requirements, lock)
            stamp.write_text(stamp_text)
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
    return venv_dir


def _stamp_ok(stamp: Path, text: str) -> bool:
    try:
        return stamp.read_text() == text
    except OSError:
        return False


def _build(venv_dir: Path, requirements: Sequence[str], lock: stacks.Lock | None) -> None:
    if venv_dir.exists():  # a half-built leftover from an interrupted run
        shutil.rmtree(venv_dir)
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    pip = [str(venv_bin(venv_dir, "python")), "-m", "pip", "--disable-pip-version-check"]
    if lock is None:
        _run([*pip, "install", "--quiet", *requirements])
    else:
        for part, name in zip(lock.split(), ("pip", "lock"), strict=True):
            path = venv_dir / f"remote-runtime-{name}.txt"
            path.write_text(part)
            _run([*pip, "install", "--quiet", "--no-deps", "--require-hashes", "-r", str(path)])
    if lock is None or lock.stack == "classic":
        enable = ["serverextension", "enable", "--py", jupyter.EXTENSION, "--sys-prefix"]
        _run([str(venv_bin(venv_dir, "jupyter")), *enable])


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


if __name__ == "__main__":
    print(stack_venv())
