"""A throwaway network namespace: a second "host" with its own loopback on this machine.

Only the namespace's own `lo` is brought up: no veth, no addresses beyond 127.0.0.1/8.
Names are `rr-<pid>-<n>` so parallel runs do not collide, and namespaces left by dead
runs can be pruned.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from remote_runtime.lifecycle import Resource
from sandbox.common import SandboxError, kill_and_wait

PREFIX = "rr-"
_NAME = re.compile(r"^rr-(\d+)-(\d+)$")
_counter = itertools.count()


def unique_name() -> str:
    """A namespace name no other live process of ours uses: rr-<pid>-<n>."""
    return f"{PREFIX}{os.getpid()}-{next(_counter)}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SandboxError(f"ip {' '.join(args)} failed", details=result.stderr.strip())
    return result


@functools.cache
def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can (probed once per process)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    probe = Namespace()
    try:
        probe.start()
    except SandboxError as exc:
        return f"cannot create a network namespace: {exc.details or exc.message}"
    finally:
        probe.close()
    return None


def available() -> bool:
    """True when we are root, have `ip`, and can really create a namespace."""
    return unavailable_reason() is None


def list_names() -> list[str]:
    """Names of the existing network namespaces."""
    result = _ip("netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def prune_stale() -> list[str]:
    """Delete rr-<pid>-<n> namespaces whose creating process is gone; return their names."""
    pruned = []
    for name in list_names():
        match = _NAME.match(name)
        if not match or Path(f"/proc/{match.group(1)}").exists():
            continue
        Namespace(name, created=True).close()
        pruned.append(name)
    return pruned


class Namespace(Resource):
    """A network namespace with `lo` up; a context manager that always deletes it."""

    def __init__(self, name: str | None = None, *, created: bool = False) -> None:
        self.name = name or unique_name()
        self._created = created


    def start(self) -> None:
        """`ip netns add NAME` and bring its loopback up."""
        self._started = True
        _ip("netns", "add", self.name)
        self._created = True
        try:
            _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` wrapped to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: list[str], *, timeout: float | None = 60, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace, capturing text output (never raises on status)."""
        kwargs.setdefault("capture_output", True)
        return subprocess.run(self.argv(argv), text=True, check=False, timeout=timeout, **kwargs)

    def pids(self) -> list[int]:
        """PIDs of the processes running inside the namespace."""
        result = _ip("netns", "pids", self.name, check=False)
        return [int(word) for word in result.stdout.split() if word.isdigit()]

    def close(self) -> None:
        """Stop whatever still runs inside (it is our throwaway host), then delete the namespace."""
        if not self._created:
            return
        self._created = False
        # A process left inside would keep the namespace alive after `ip netns del`.
        kill_and_wait(self.pids)
        _ip("netns", "delete", self.name, check=False)
