"""Stage `remote`: the remote side as `up` would find it, with nothing installed or
started: the Python that runs the agent, the server stack `up` would run (an existing
Jupyter or the managed env, built or not) and the Colab routes it serves, whether the
managed env can be built (venv), the kernel's Python and its ipykernel, the port on the
remote, and disk space."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import ports, provision, stacks, state
from ..bootstrap import run_agent
from ..errors import RemoteRuntimeError, RemoteSetupError, SSHError, StateError
from ..provision import ServerStack
from ..remote import RemoteHost
from .walk import Walk

STAGE = "remote"
AGENT_TIMEOUT = 120.0
GB = 1024 ** 3
BUILD_NEEDS = 400 * 1024 ** 2  # a managed env (about 200 MB) and its downloads
LOW_DISK = 1 * GB
ROUTE_NAMES = {stacks.WEBSOCKET: "websocket (jupyter_http_over_ws)", stacks.CORS: "direct (CORS)"}

Stack = ServerStack | stacks.Choice

# Checks a particular stack needs beyond what the probe says (a container image, say):
# stack name -> function adding its checks to this stage (`walk.ok/warn/fail`, with
# `stops=` when no runtime can start). It runs with `walk.session`, `walk.probe` and
# `walk.profile` set, and `walk.stack` (what `provision.plan` decided; None for a
# stack that `plan` does not decide, such as one named by `jupyter.stack` that is not
# a Jupyter found or built here: then this function is all the doctor checks of it).
STACK_CHECKS: dict[str, Callable[[Walk], None]] = {}


@dataclass(frozen=True)
class KernelFacts:
    """The Python the Colab kernel runs, as the doctor found it."""

    python: str
    why: str  # how it was chosen ("the server's env", "kernel.python", ...)
    version: str = ""
    ipykernel: str | None = None  # its version; None: missing
    error: str = ""  # why it could not be run
    if_missing: str = "fail"  # what `up` does without ipykernel: install | ask | fail


def run(walk: Walk) -> None:
    if walk.blocked(STAGE) or walk.session is None or walk.profile is None:
        return
    host = RemoteHost(walk.session, walk.profile.jupyter)
    port, explicit = walk.port
    try:
        probe = host.probe(ports.candidates(port, explicit))
    except RemoteRuntimeError as exc:
        walk.fail(STAGE, "python", exc.message, exc.hint or "",
                  stops="the remote agent cannot run")
        return
    walk.probe = probe
    walk.remote_free = probe.free_ports
    walk.ok(STAGE, "python",
            f"{walk.profile.jupyter.python} is {probe.python} (Python {probe.version[0]}."
            f"{probe.version[1]}); user {probe.user} (uid {probe.uid}), home {probe.home}")
    wanted = walk.profile.jupyter.stack
    if wanted not in ("auto", *stacks.STACKS):  # not a Jupyter found or built here
        _other_stack(walk, wanted)
        _ports(walk, port, explicit)
        return
    try:
        stack = provision.plan(walk.profile.jupyter, probe)
    except RemoteSetupError as exc:
        name = "python" if probe.version < stacks.MIN_PYTHON else "stack"
        walk.fail(STAGE, name, exc.message, exc.hint or "",
                  stops="no server stack can run on the remote")
        _ports(walk, port, explicit)
        return
    walk.stack = stack
    facts = _agent(walk, stack)
    built = _stack(walk, stack, facts)
    _routes(walk, stack)
    if not built:
        _venv(walk, facts)
    _kernel(walk, _kernel_facts(stack, facts, built))
    check = STACK_CHECKS.get(stack.stack)
    if check is not None:
        check(walk)
    _ports(walk, port, explicit)
    _disk(walk, facts, built)


def _other_stack(walk: Walk, name: str) -> None:
    check = STACK_CHECKS.get(name)
    if check is None:
        walk.warn(STAGE, "stack", f"the {name} stack has no checks of its own in doctor "
                  "yet: the route checks below try it")
    else:
        check(walk)


def _agent(walk: Walk, stack: Stack) -> dict[str, Any]:
    """The agent's `doctor` answer (venv, the managed env, disk, the kernel's Python)."""
    assert walk.session is not None and walk.profile is not None
    config: dict[str, Any] = {"workdir": walk.profile.jupyter.workdir}
    if isinstance(stack, stacks.Choice):
        config["env_name"] = stack.env_name
    elif isinstance(stack, ServerStack):
        python = _candidate_python(walk, stack)
        if python:
            config["kernel_python"] = python
    try:
        result = run_agent(walk.session, walk.profile.jupyter.python, "doctor",
                           stdin=json.dumps(config) + "\n", timeout=AGENT_TIMEOUT)
    except SSHError as exc:
        return {"error": exc.message}
    for line in reversed(result.stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict):
            return answer
    return {"error": (result.stderr or result.stdout).strip()[-300:] or "no answer"}


def _candidate_python(walk: Walk, stack: ServerStack) -> str | None:
    assert walk.probe is not None
    for candidate in walk.probe.candidates:
        if candidate.get("argv") == stack.jupyter:
            return str(candidate.get("python") or "") or None
    return None


def _stack(walk: Walk, stack: Stack, facts: dict[str, Any]) -> bool:
    """The stack line; True when nothing has to be built first."""
    if isinstance(stack, ServerStack):
        walk.ok(STAGE, "stack", f"the existing Jupyter at {stack.jupyter[0]} serves Colab "
                f"({stack.stack} stack); `up` uses it as it is")
        return True
    env = facts.get("env") or {}
    pinned = "a tested, locked version set" if stack.lock is not None else \
        "no tested version set: pip resolves the newest versions"
    if env.get("built"):
        walk.ok(STAGE, "stack", f"managed env {env.get('path')}: {stack.stack} stack, "
                f"built ({pinned}); `up` reuses it")
        return True
    walk.ok(STAGE, "stack", f"managed env ({stack.stack} stack, {pinned}) is not built yet: "
            f"`up` builds it under {env.get('path') or 'the cache dir'} (about a minute)")
    return False


def _routes(walk: Walk, stack: Stack) -> None:
    routes = stacks.ROUTES[stack.stack]
    names = " and ".join(ROUTE_NAMES[r] for r in routes)
    if stacks.WEBSOCKET in routes:
        walk.ok(STAGE, "routes", f"serves Colab's {names} routes")
        return
    walk.warn(STAGE, "routes", f"serves Colab's {names} route only: the websocket route "
              "(jupyter_http_over_ws) needs the classic stack (notebook 6)",
              "current Colab uses the direct route; for the websocket route too, set "
              "jupyter.stack: classic (on a Python with a tested classic set)")


def _venv(walk: Walk, facts: dict[str, Any]) -> None:
    venv = facts.get("venv") or {}
    assert walk.probe is not None
    python = walk.probe.python
    if "error" in facts and not venv:
        walk.warn(STAGE, "venv", f"could not ask the remote: {facts['error']}")
    elif venv.get("ok"):
        walk.ok(STAGE, "venv", f"{python} can build the managed env ({venv.get('reason')})")
    else:
        minor = ".".join(map(str, walk.probe.version))
        walk.fail(STAGE, "venv", f"{python} cannot build the managed env: "
                  f"{venv.get('reason', 'venv is missing')}",
                  f"install its venv support (Debian/Ubuntu: apt install python{minor}-venv), "
                  "or set jupyter.python to a Python that has it",
                  stops="the managed env cannot be built on the remote")


def _kernel_facts(stack: Stack, facts: dict[str, Any], built: bool) -> KernelFacts | None:
    """The kernel Colab starts is the server env's own Python (the default kernelspec)."""
    found = facts.get("kernel") or {}
    if isinstance(stack, ServerStack):
        if not found:
            return None
        return KernelFacts(python=str(found.get("python", "?")), why="the existing "
                           "Jupyter's Python", version=str(found.get("version", "")),
                           ipykernel=found.get("ipykernel"), error=str(found.get("error", "")))
    lock_has = stack.lock is not None and any(
        name.lower() == "ipykernel" for name, _ in stack.lock.pins)
    if stack.lock is None or lock_has:
        return KernelFacts(python="the managed env's Python", why="the server env",
                           ipykernel="(in the stack's lock)" if lock_has
                           else "(installed with the stack)",
                           version=f"{stack.python[0]}.{stack.python[1]}")
    return KernelFacts(python="the managed env's Python", why="the server env",
                       ipykernel=None, if_missing="fail")


def _kernel(walk: Walk, facts: KernelFacts | None) -> None:
    if facts is None:
        walk.warn(STAGE, "kernel", "could not tell which Python the kernel runs")
        return
    if facts.error:
        walk.fail(STAGE, "kernel", f"the kernel's Python {facts.python} does not run: "
                  f"{facts.error}", "check the Python the kernel is set to run",
                  stops="the kernel's Python does not run")
        return
    version = f" (Python {facts.version}; {facts.why})" if facts.version else f" ({facts.why})"
    if facts.ipykernel:
        walk.ok(STAGE, "kernel", f"{facts.python}{version} has ipykernel {facts.ipykernel}")
        return
    command = f"{facts.python} -m pip install ipykernel"
    if facts.if_missing == "install":
        walk.warn(STAGE, "kernel", f"{facts.python}{version} has no ipykernel: `up` installs "
                  "it (kernel.install_ipykernel: yes)")
    elif facts.if_missing == "ask":
        walk.warn(STAGE, "kernel", f"{facts.python}{version} has no ipykernel: `up` asks to "
                  "install it (and fails where nobody can answer)", f"install it: {command}")
    else:
        walk.fail(STAGE, "kernel", f"{facts.python}{version} has no ipykernel: Colab "
                  "cannot start a kernel", f"install it: {command}",
                  stops="the kernel's Python has no ipykernel")


def _ports(walk: Walk, port: int, explicit: bool) -> None:
    free = walk.remote_free
    if free is None:
        return
    ours = _our_runtime(walk, port)
    if port in free:
        walk.ok(STAGE, "port", f"port {port} is free on the remote")
    elif ours:
        walk.ok(STAGE, "port", f"port {port} on the remote is held by {ours}")
    elif explicit:
        walk.fail(STAGE, "port", f"port {port} is in use on the remote host",
                  "stop what holds it there, or choose another (--port, jupyter.port)")
    elif free:
        walk.warn(STAGE, "port", f"port {port} is in use on the remote host; `up` takes "
                  f"the next one free on both ends ({free[0]} is free there)")
    else:
        walk.fail(STAGE, "port", f"no port from {port} to {port + ports.PORT_SEARCH - 1} is "
                  "free on the remote host", "choose one with --port")


def _our_runtime(walk: Walk, port: int) -> str:
    """The profile's own runtime, when it is up on `port` (then its server holds it)."""
    assert walk.profile is not None
    try:
        record = state.get(walk.profile.name)
    except StateError:
        return ""
    if record is None or not record.alive or record.port != port:
        return ""
    return f"runtime '{record.name}' (its server, pid {record.pid} here)"


def _disk(walk: Walk, facts: dict[str, Any], built: bool) -> None:
    disk = facts.get("disk") or {}
    for what, label in (("env", "the managed env's dir"), ("workdir", "the workdir")):
        found = disk.get(what) or {}
        if "free" not in found:
            if found.get("error"):
                walk.warn(STAGE, "disk", f"{label} {found.get('path')}: {found['error']}")
            continue
        free = int(found["free"])
        text = f"{free / GB:.1f} GB free in {label} ({found.get('path')})"
        if what == "env" and not built and free < BUILD_NEEDS:
            walk.fail(STAGE, "disk", f"{text}: the managed env needs about "
                      f"{BUILD_NEEDS // 1024 ** 2} MB", "free some space on the remote host",
                      stops="no room for the managed env")
        elif free < LOW_DISK:
            walk.warn(STAGE, "disk", text + ": little room for notebooks and kernels")
        else:
            walk.ok(STAGE, "disk", text)
