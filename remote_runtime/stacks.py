"""The Jupyter server stacks remote-runtime can build, and their locked version sets.

- `classic`: notebook 6 with jupyter_http_over_ws. Serves both of Colab's routes:
  the extension's websocket and the direct (CORS) one (DESIGN.md facts 1, 11).
- `modern`: a current Jupyter Server (jupyter_server 2, the server of notebook 7)
  with ipykernel. Serves the direct route only: the extension cannot load there.
- `colab-image`: not a stack we build but Colab's own runtime image, run with Docker
  (`colab_image` holds its facts, `container` runs it).

The managed env installs a *lock*: every transitive dependency pinned, with the
hashes of every file PyPI has for that version, one file per stack and Python minor
version under `remote_runtime/locks/` (made by scripts/lock_stacks.py, which resolves
them on each real interpreter with no pip configuration). The remote then runs
`pip install --no-deps --require-hashes -r LOCK`: nothing is resolved there, so no
pip configuration (extra indexes, find-links, constraints) can send the resolver
backtracking, while the user's indexes and proxies still serve the files.

Pure data, no SSH: `remote` ships a lock to the host, `health` checks the routes.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

STACKS = ("classic", "modern")
# Colab's own runtime image, run with Docker (`colab_image`, `container`): not built here.
COLAB_IMAGE = "colab-image"
STACK_CHOICES = ("auto", *STACKS, COLAB_IMAGE)
WEBSOCKET, CORS = "websocket", "cors"
ROUTES = {"classic": (WEBSOCKET, CORS), "modern": (CORS,), COLAB_IMAGE: (WEBSOCKET, CORS)}

# What each stack is, before locking (DESIGN.md fact 1: the extension needs the classic
# server and tornado < 6.5). The locks are resolved from these.
REQUIREMENTS = {
    "classic": ("jupyter_http_over_ws", "notebook<7", "tornado<6.5"),
    "modern": ("jupyter_server>=2,<3", "ipykernel"),
}
# Python >= 3.12 has no distutils; notebook 6 (and the extension) still import it.
REQUIREMENTS_PY312 = {"classic": ("setuptools",), "modern": ()}

# The oldest Python that can host the server: every stack's dependencies need 3.8+
# (and the pip of 3.6 cannot even talk to a proxy: DESIGN.md fact 12).
MIN_PYTHON = (3, 8)
# Part of every managed env's identity: bumped when the way an env is built changes,
# so envs built the old way are never reused (2: locked installs, stack in the name).
ENV_FORMAT = 2

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def requirements(stack: str, python: tuple[int, int]) -> list[str]:
    """The unlocked requirement set of `stack` on `python`."""
    extra = REQUIREMENTS_PY312[stack] if python >= (3, 12) else ()
    return [*REQUIREMENTS[stack], *extra]


@dataclass(frozen=True)
class Lock:
    """One lock file: the exact set a stack installs on one Python minor version."""

    stack: str
    python: tuple[int, int]
    text: str

    @property
    def pins(self) -> list[tuple[str, str]]:
        """(name, version) of every package, in file order."""
        return [(m.group(1), m.group(2)) for line in self.text.splitlines()
                if (m := _PIN.match(line))]

    def split(self) -> tuple[str, str]:
        """(pip's own entry, everything else): pip is upgraded first, on its own, so a
        venv's old pip (20.0 on Ubuntu 20.04) never has to read newer wheel tags."""
        blocks = _blocks(self.text)
        pip = [b for b in blocks if b.lower().startswith("pip==")]
        rest = [b for b in blocks if not b.lower().startswith("pip==")]
        return "".join(pip), "".join(rest)

    @property
    def digest(self) -> str:
        data = f"{ENV_FORMAT}\n{self.stack}\n{self.text}".encode()
        return hashlib.sha256(data).hexdigest()[:12]


def _blocks(text: str) -> list[str]:
    """Requirement entries with their continuation lines (comments dropped)."""
    blocks: list[str] = []
    for line in text.splitlines(keepends=True):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[:1].isspace() and blocks:
            blocks[-1] += line
        else:
            blocks.append(line)
    return blocks


def lock_name(stack: str, python: tuple[int, int]) -> str:
    return f"{stack}-py{python[0]}{python[1]}.txt"


@functools.cache
def lock_for(stack: str, python: tuple[int, int]) -> Lock | None:
    """The shipped lock of `stack` for a Python minor version, if there is one."""
    path = resources.files("remote_runtime").joinpath("locks", lock_name(stack, python))
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Lock(stack, python, text)


def locked_pythons(stack: str) -> list[tuple[int, int]]:
    """Every Python minor version `stack` has a lock for, oldest first."""
    folder = resources.files("remote_runtime").joinpath("locks")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(rf"{stack}-py3(\d+)\.txt", entry.name)
        if match:
            found.append((3, int(match.group(1))))
    return sorted(found)


@dataclass(frozen=True)
class Choice:
    """What the managed env of a runtime will hold."""

    stack: str
    python: tuple[int, int]
    lock: Lock | None  # None: no tested set for this Python, an unpinned install
    reason: str  # one line: why this stack (shown as progress)

    @property
    def routes(self) -> tuple[str, ...]:
        return ROUTES[self.stack]

    @property
    def env_name(self) -> str:
        """The env's directory name on the remote: stack, Python, and what is in it."""
        version = f"py{self.python[0]}{self.python[1]}"
        if self.lock is not None:
            return f"{self.stack}-{version}-{self.lock.digest}"
        unpinned = "\n".join([str(ENV_FORMAT), *requirements(self.stack, self.python)])
        digest = hashlib.sha256(unpinned.encode()).hexdigest()[:12]
        return f"{self.stack}-{version}-unpinned-{digest}"


class NoStack(ValueError):
    """No stack can be built for this Python (the message says why)."""


def choose(wanted: str, python: tuple[int, int]) -> Choice:
    """The stack for the managed env: `wanted` is the profile's jupyter.stack."""
    label = f"Python {python[0]}.{python[1]}"
    if python < MIN_PYTHON:
        raise NoStack(f"{label} is too old to host the Jupyter server "
                      f"(it needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer)")
    if wanted in ("auto", "classic"):
        lock = lock_for("classic", python)
        if lock is not None:
            return Choice("classic", python, lock, "classic stack (notebook 6 with "
                          "jupyter_http_over_ws): Colab's websocket and direct routes")
        newest = max(locked_pythons("classic"), default=None)
        if wanted == "classic":
            raise NoStack(f"the classic stack (notebook 6) has no tested version set for "
                          f"{label}" + (f" (newest: {newest[0]}.{newest[1]})" if newest else ""))
    lock = lock_for("modern", python)
    why = ("asked for by the profile" if wanted == "modern"
           else f"notebook 6 has no tested version set for {label}")
    if lock is not None:
        return Choice("modern", python, lock,
                      f"modern stack (Jupyter Server 2, {why}): Colab's direct route only")
    return Choice("modern", python, None,
                  f"modern stack (Jupyter Server 2, {why}): Colab's direct route only; "
                  f"no tested version set for {label}, so pip resolves the newest versions")
