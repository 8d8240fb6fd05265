"""The sandbox as a remote host: profiles that reach it, its Jupyter servers, and cleanup
of whatever a test left on it (or started locally)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox import Sandbox, to_yaml
from sandbox.common import pids_with_env
from support.cli import describe, run_cli
from support.env import Isolated
from support.procs import alive, cmdline, in_other_netns, wait_gone


def write_profiles(path: Path, profiles: dict[str, dict[str, Any]]) -> Path:
    """Write `profiles` (name -> body) as a profiles.yaml at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml({"profiles": profiles}))
    return path


def sandbox_profile(
    box: Sandbox,
    name: str = "sb",
    port: int | None = 18888,
    *,
    ssh: dict[str, Any] | None = None,
    jupyter: dict[str, Any] | None = None,
    kernel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A profile body for the sandbox; `port=None` leaves jupyter.port out (the default)."""
    body = box.profile(name, port or 8888)
    if port is None:
        del body["jupyter"]["port"]
    body["ssh"].update(ssh or {})
    body["jupyter"].update(jupyter or {})
    body["kernel"].update(kernel or {})
    return body


def remote_servers(box: Sandbox, port: int) -> list[int]:
    """Jupyter servers on `port` that `ps` inside the namespace sees, started by our sandbox."""
    ps = box.run(["ps", "-ww", "-eo", "pid=,args="], timeout=30)
    assert ps.returncode == 0, ps.stderr
    ours = set(box.remote_pids())
    return [
        pid for pid in (
            int(line.split(None, 1)[0]) for line in ps.stdout.splitlines()
            if ("notebook" in line or "jupyter-server" in line) and f"--port={port}" in line
        )
        if pid in ours and alive(pid)
    ]


def remote_server(box: Sandbox, port: int) -> int:
    """The one Jupyter server on `port`, checked to run on the remote host."""
    found = remote_servers(box, port)
    assert len(found) == 1, found
    assert in_other_netns(found[0]), "the Jupyter server does not run on the remote host"
    return found[0]


@contextlib.contextmanager
def checked_remote(box: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, checked empty before the test; remote leftovers killed after it."""
    leftover = wait_gone(box.remote_pids())
    assert not leftover, f"remote processes left by an earlier test: {leftover}"
    try:
        yield box
    finally:
        for pid in box.remote_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Teardown:
    """Profiles files this test used; at the end `down --all` for each, then the
    processes this test started (found by its private XDG_STATE_HOME) are killed."""

    def __init__(self, isolated: Isolated):
        self.isolated = isolated
        self.profiles: list[Path] = []

    def add(self, profiles: Path) -> Path:
        self.profiles.append(profiles)
        return profiles

    def ours(self) -> list[int]:
        """Local processes of this test: supervisors, `run`s and their children."""
        return pids_with_env("XDG_STATE_HOME", str(self.isolated.state))

    def close(self) -> list[str]:
        problems = []
        for profiles in self.profiles:
            try:
                result = run_cli("down", "--all", "--profiles", str(profiles), timeout=120)
            except subprocess.TimeoutExpired:
                problems.append(f"down --all --profiles {profiles} timed out")
                continue
            if result.returncode != 0:
                problems.append(describe(result))
        for pid in self.ours():
            if alive(pid):
                problems.append(f"killed leftover process {pid}: {cmdline(pid)}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return problems

    @classmethod
    @contextlib.contextmanager
    def guard(cls, isolated: Isolated) -> Iterator[Teardown]:
        teardown = cls(isolated)
        try:
            yield teardown
        finally:
            problems = teardown.close()
            if problems:  # shown in the report; the test's own asserts decide pass/fail
                print("teardown:", *problems, sep="\n")


def profiles_for(tmp_path: Path, box: Sandbox, guard: Teardown,
                 **bodies: dict[str, Any]) -> Path:
    """A profiles file with one sandbox profile per keyword (name=dict(port=..., ...))."""
    profiles = {
        name: sandbox_profile(box, name, spec.pop("port"), **spec)
        for name, spec in bodies.items()
    }
    return guard.add(write_profiles(tmp_path / "profiles.yaml", profiles))
