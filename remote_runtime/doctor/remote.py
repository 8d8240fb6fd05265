"""Stage `remote`: the remote side as `up` would find it, with nothing installed or
started: the Python that runs the agent, the server stack `up` would run (an existing
Jupyter or the managed env, built or not) and the Colab routes it serves, whether the
managed env can be built (venv), the kernel's Python (`kernel.python` in the remote login
environment, found as `up` finds it) and its ipykernel, the port on the remote, and disk
space."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import container, kernel, ports, provision, stacks, state
from ..bootstrap import run_agent
from ..errors import RemoteRuntimeError, RemoteSetupError, SSHError, StateError
from ..provision import ServerStack
from ..remote import RemoteHost, agent_answer
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


def _colab_image(walk: Walk) -> None:
    """Docker for Colab's image (`container.check`: usable by the SSH user or through
    sudo, the GPU, the image pulled or room to pull it); nothing is pulled or run."""
    assert walk.session is not None and walk.profile is not None
    for found in container.check(RemoteHost(walk.session, walk.profile.jupyter)):
        if found.level == "ok":
            walk.ok(STAGE, "docker", found.text)
        elif found.level == "warning":
            walk.warn(STAGE, "docker", found.text, found.fix)
        else:
            walk.fail(STAGE, "docker", found.text, found.fix,
                      stops="Colab's image cannot run on the remote")


STACK_CHECKS[stacks.COLAB_IMAGE] = _colab_image


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
    _kernel(walk)
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
    """The agent's `doctor` answer (venv, the managed env, disk)."""
    assert walk.session is not None and walk.profile is not None
    config: dict[str, Any] = {"workdir": walk.profile.jupyter.workdir}
    if isinstance(stack, stacks.Choice):
        config["env_name"] = stack.env_name
    try:
        result = run_agent(walk.session, walk.profile.jupyter.python, "doctor",
                           stdin=json.dumps(config) + "\n", timeout=AGENT_TIMEOUT)
    except SSHError as exc:
        return {"error": exc.message}
    try:
        return agent_answer(result.stdout, "doctor")
    except RemoteSetupError as exc:  # no answer (the tail says why), or a refusal
        tail = result.stderr.strip()[-300:]
        return {"error": f"{exc.message}: {tail}" if tail else exc.message}


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


def _kernel(walk: Walk) -> None:
    """The Python `kernel.python` resolves to in the remote login environment (after
    `kernel.setup`), found by the agent as `up` finds it, and whether it has ipykernel.
    The doctor installs nothing: where `up` would install ipykernel (or ask to), no
    short runtime is started for the route checks."""
    assert walk.session is not None and walk.profile is not None
    settings = walk.profile.kernel
    try:
        choice, has_ipykernel = kernel.find(
            walk.session, settings, agent_python=walk.profile.jupyter.python,
            workdir=walk.profile.jupyter.workdir, progress=walk.progress)
    except RemoteRuntimeError as exc:
        walk.fail(STAGE, "kernel", exc.message, exc.hint or "",
                  stops="the kernel's Python cannot be found")
        return
    if choice.note:
        walk.warn(STAGE, "kernel env", f"{choice.note}: the kernel gets the SSH session's "
                  "environment", "check the remote login shell's startup files")
    _kernel_verdict(walk, choice, has_ipykernel, settings.install_ipykernel)


def _kernel_verdict(walk: Walk, choice: kernel.KernelChoice, has_ipykernel: bool,
                    policy: str) -> None:
    real = f" at {choice.executable}" if choice.executable != choice.python else ""
    setup = f", after kernel.setup ({len(choice.setup)} line" \
        f"{'s' if len(choice.setup) != 1 else ''})" if choice.setup else ""
    what = f"{choice.python} (Python {choice.version}{real}; {choice.why}{setup})"
    if has_ipykernel:
        walk.ok(STAGE, "kernel", f"{what} has ipykernel")
        return
    command = kernel.pip_command(choice.python)
    not_started = "the doctor installs nothing, so no runtime is started to check the routes"
    if policy == "yes":
        walk.warn(STAGE, "kernel", f"{what} has no ipykernel: `up` installs it "
                  "(kernel.install_ipykernel: yes)", f"or install it now: {command}")
        walk.stop(f"the kernel's Python has no ipykernel yet ({not_started})")
    elif policy == "ask":
        walk.warn(STAGE, "kernel", f"{what} has no ipykernel: `up` asks to install it (and "
                  "fails where nobody can answer)", f"install it: {command}, or set "
                  "kernel.install_ipykernel: yes")
        walk.stop(f"the kernel's Python has no ipykernel yet ({not_started})")
    else:
        walk.fail(STAGE, "kernel", f"{what} has no ipykernel: Colab cannot start a kernel "
                  "(kernel.install_ipykernel: no)", f"install it: {command}, or set "
                  "kernel.python to a Python that has it",
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
