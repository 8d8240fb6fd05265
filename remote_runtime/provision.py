"""Which Jupyter a runtime runs: an existing one on the host that serves Colab, or the
managed env, built there once from the locked version set of its stack (`stacks`).

Decided from the probe alone (`jupyter.env`, `jupyter.stack`, the remote Python);
the build itself is the agent's (`agent/build.py`), which reports counted steps that
become `options.Step` progress (the CLI draws them as one bar).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import container, stacks
from .bootstrap import start_agent
from .errors import RemoteSetupError
from .options import Progress
from .profiles import JupyterSettings
from .remote import Probe, RemoteHost, follow_steps

INSTALL_TIMEOUT = 900.0  # seconds without a word from the build
BUILD_STOPPED = "the managed environment build stopped unexpectedly"


@dataclass(frozen=True)
class ServerStack:
    """The Jupyter a runtime runs: its argv, its stack (`stacks`), where it came from."""

    jupyter: list[str]  # Jupyter's argv; for the colab-image stack, the image
    stack: str
    source: str  # "existing" (found on the host), "managed" (our env) or "image"
    container: container.Plan | None = None  # the colab-image stack's container

    @property
    def routes(self) -> tuple[str, ...]:
        return stacks.ROUTES[self.stack]


def ensure_stack(host: RemoteHost, probe: Probe, progress: Progress) -> ServerStack:
    """The Jupyter to run, per `jupyter.env` (auto | existing | managed) and
    `jupyter.stack` (auto | classic | modern): an existing one that serves Colab
    (classic preferred), else the managed env; or Colab's image (stack colab-image)."""
    if host.settings.stack == stacks.COLAB_IMAGE:
        image = container.prepare(host, progress)
        return ServerStack([image.image], stacks.COLAB_IMAGE, "image", image)
    decided = plan(host.settings, probe)
    if isinstance(decided, ServerStack):
        progress(f"using the existing Jupyter at {decided.jupyter[0]} "
                 f"({decided.stack} stack: {_routes_text(decided.stack)})")
        return decided
    return _ensure_managed(host, probe, decided, progress)


def plan(settings: JupyterSettings, probe: Probe) -> ServerStack | stacks.Choice:
    """What `ensure_stack` runs, decided from the probe alone: an existing Jupyter, or
    the managed env's stack (built or not). Raises RemoteSetupError as it would."""
    mode, wanted = settings.env, settings.stack
    order = ["classic", "modern"] if wanted == "auto" else [wanted]
    if mode in ("existing", "auto"):
        for stack in order:
            for candidate in probe.candidates:
                if stack in candidate.get("stacks", ()):
                    return ServerStack(list(candidate["argv"]), stack, "existing")
    if mode == "existing":
        reasons = "; ".join(
            f"{c['path']}: " + (c.get("reason") or f"serves the {' and '.join(c['stacks'])} "
                                "stack only") for c in probe.candidates)
        what = {"auto": "serve Colab", "classic": "load jupyter_http_over_ws",
                "modern": "run a Jupyter Server 2"}[wanted]
        raise RemoteSetupError(
            f"no Jupyter on the remote host can {what} ({reasons or 'none found'})",
            hint="use env: managed (or auto) to let remote-runtime build one, or install "
            "'" + "' '".join(stacks.REQUIREMENTS["classic"]) + "' there",
        )
    return _choose(settings, probe)


def _choose(settings: JupyterSettings, probe: Probe) -> stacks.Choice:
    try:
        return stacks.choose(settings.stack, probe.version)
    except stacks.NoStack as exc:
        if probe.version >= stacks.MIN_PYTHON:  # classic asked for, none for this Python
            raise RemoteSetupError(str(exc), hint="set jupyter.stack: auto (or modern) "
                                   "in the profile") from None
        major, minor = probe.version
        reason = (f"Python {major}.{minor} ({probe.python}) cannot host the Jupyter "
                  f"server: it needs Python {stacks.MIN_PYTHON[0]}.{stacks.MIN_PYTHON[1]} "
                  "or newer")
        usable = _best_python(probe.other_pythons)
        if usable is None:
            raise RemoteSetupError(
                f"{reason}, and none was found on the host",
                hint="install python3.8 or newer there (with its venv module) and set "
                "jupyter.python to it",
            ) from None
        raise RemoteSetupError(
            f"{reason}; this host has Python {usable['version'][0]}.{usable['version'][1]}:"
            f" set jupyter.python: {usable['path']} in the profile",
        ) from None


def _ensure_managed(host: RemoteHost, probe: Probe, choice: stacks.Choice,
                    progress: Progress) -> ServerStack:
    progress(f"managed Jupyter environment: {choice.reason}")
    config: dict[str, Any] = {
        "name": choice.env_name,
        "enable_extension": choice.stack == "classic",
        "task": f"installing the {choice.stack} Jupyter stack",
    }
    if choice.lock is not None:
        bootstrap, rest = choice.lock.split()
        config.update(bootstrap=bootstrap, lock=rest, count=len(choice.lock.pins) - 1)
    else:
        config.update(requirements=stacks.requirements(choice.stack, choice.python))
    process = start_agent(host.session, host.settings.python, "ensure-managed")
    try:
        process.write_line(json.dumps(config))
        for message in follow_steps(process, progress, silence=INSTALL_TIMEOUT,
                                    stopped=BUILD_STOPPED):
            if message.get("building"):
                progress(f"building it on the remote host ({_where(probe, choice)})")
            elif "error" in message:
                raise RemoteSetupError(
                    f"building the managed Jupyter environment failed: {message['error']}",
                    hint="the remote host needs python3-venv and access to a package "
                    "index (pip honours https_proxy and the host's pip configuration)",
                    details=str(message.get("log", ""))[-1500:] or None,
                )
            elif message.get("ok"):
                return ServerStack([str(message["jupyter"])], choice.stack, "managed")
        raise RemoteSetupError(BUILD_STOPPED)  # follow_steps ends only by raising
    finally:
        process.close()


def _routes_text(stack: str) -> str:
    names = {stacks.WEBSOCKET: "websocket", stacks.CORS: "direct"}
    return " and ".join(names[r] for r in stacks.ROUTES[stack]) + " route" + (
        "s" if len(stacks.ROUTES[stack]) > 1 else "")


def _best_python(found: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The interpreter to suggest: the newest with a tested classic set, else the newest."""
    def key(entry: dict[str, Any]) -> tuple[bool, tuple[int, int]]:
        version = (int(entry["version"][0]), int(entry["version"][1]))
        return stacks.lock_for("classic", version) is not None, version

    usable = [e for e in found if tuple(e["version"]) >= stacks.MIN_PYTHON]
    return max(usable, key=key, default=None)


def _where(probe: Probe, choice: stacks.Choice) -> str:
    return f"{probe.base}/envs/{choice.env_name}, Python {choice.python[0]}.{choice.python[1]}"
