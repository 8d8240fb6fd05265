"""The kernel Colab starts: the user's own Python on the remote, chosen and checked.

`prepare()` asks the agent which Python `kernel.python` means there (in the user's
login environment, after `kernel.setup`) and whether it has ipykernel. When it
has not, `kernel.install_ipykernel` decides: `yes` installs it, `ask` asks
through the caller's `confirm` (a terminal), `no` - or `ask` without a terminal -
is an error that names the exact command. The choice goes to
`RemoteHost.start_server`, whose agent writes the kernelspec (`agent/kernel.py`).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bootstrap import start_agent
from .errors import RemoteSetupError
from .options import Progress
from .profiles import KernelSettings
from .remote import follow_steps
from .ssh import Prompter, Session

# Where `kernel.python: auto` looks for a Deep Learning VM's conda base (before the
# login environment's python3); a colon-separated list of remote paths overrides it.
AUTO_ENV = "REMOTE_RUNTIME_AUTO_PYTHONS"
DEFAULT_AUTO = ("/opt/conda/bin/python",)
CHECK_TIMEOUT = 300.0  # login shell, kernel.setup (a slow `module load`), the check
INSTALL_TIMEOUT = 900.0
STOPPED = "the remote agent stopped while checking the kernel's Python"

# Asked on a terminal; True means go ahead.
Confirm = Callable[[str], bool]

_HINTS = {
    "find": "check kernel.python, kernel.setup and jupyter.workdir in the profile",
    "install": "install ipykernel there yourself, or set kernel.python to a Python environment "
               "you can install into (a venv or conda env)",
}


@dataclass(frozen=True)
class KernelChoice:
    python: str  # the interpreter the kernel runs, as found on the remote
    why: str  # "kernel.python", "auto: the Deep Learning VM's conda base", ...
    version: str
    executable: str  # its sys.executable (a pyenv shim's is the real interpreter)
    prefix: str  # its sys.prefix (its own kernelspecs stay listed)
    setup: tuple[str, ...]
    note: str | None = None  # e.g. the login shell could not be read

    def to_agent(self) -> dict[str, Any]:
        return {"python": self.python, "setup": list(self.setup), "prefix": self.prefix}

    def describe(self) -> str:
        real = f" at {self.executable}" if self.executable != self.python else ""
        return f"kernel: {self.python} (Python {self.version}{real}; {self.why})"


def asking(prompter: Prompter | None) -> Confirm | None:
    """A yes/no question put through `prompter` (the terminal, or `up --detach`'s
    terminal through its supervisor); None when nobody can answer."""
    if prompter is None:
        return None

    def confirm(question: str) -> bool:
        try:
            answer = prompter.ask(f"{question} [y/N] ", echo=True)
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")

    return confirm


def auto_search() -> list[str]:
    value = os.environ.get(AUTO_ENV)
    if value is None:
        return list(DEFAULT_AUTO)
    return [item for item in value.split(":") if item]


def prepare(
    session: Session,
    settings: KernelSettings,
    *,
    agent_python: str,
    workdir: str,
    confirm: Confirm | None,
    progress: Progress,
) -> KernelChoice:
    """Find and check the kernel's Python on the remote (installing ipykernel if told to)."""
    progress("finding the kernel's Python in the remote login environment")
    answer = _ask_agent(session, settings, agent_python, workdir, progress,
                        install=settings.install_ipykernel == "yes")
    if not answer["ipykernel"]:
        _missing_ipykernel(answer, settings, confirm)
        answer = _ask_agent(session, settings, agent_python, workdir, progress, install=True)
    choice = _choice(answer, settings)
    if choice.note:
        progress(f"{choice.note}: the kernel gets the SSH session's environment")
    progress(choice.describe())
    return choice


def find(
    session: Session,
    settings: KernelSettings,
    *,
    agent_python: str,
    workdir: str,
    progress: Progress,
) -> tuple[KernelChoice, bool]:
    """The Python `kernel.python` names on the remote, as `prepare` finds it, and whether
    it has ipykernel; nothing is installed (`doctor`)."""
    answer = _ask_agent(session, settings, agent_python, workdir, progress, install=False)
    return _choice(answer, settings), bool(answer["ipykernel"])


def _choice(answer: dict[str, Any], settings: KernelSettings) -> KernelChoice:
    return KernelChoice(
        python=str(answer["python"]), why=str(answer["why"]), version=str(answer["version"]),
        executable=str(answer["executable"]), prefix=str(answer["prefix"]),
        setup=tuple(settings.setup), note=answer.get("note"))


def pip_command(python: str) -> str:
    return shlex.join([python, "-m", "pip", "install", "ipykernel"])


def _missing_ipykernel(answer: dict[str, Any], settings: KernelSettings,
                       confirm: Confirm | None) -> None:
    """Return when the user agrees to install ipykernel; raise otherwise."""
    python, version = str(answer["python"]), str(answer["version"])
    command = pip_command(python)
    others = "or set kernel.python to a Python that has it"
    if settings.setup:
        command += " (in the environment kernel.setup prepares)"
    if settings.install_ipykernel == "ask" and confirm is not None:
        if confirm(f"The kernel's Python {python} (Python {version}, {answer['why']}) has no "
                   f"ipykernel. Install it there now ({pip_command(python)})?"):
            return
        hint = f"install it yourself, {others}"
    elif settings.install_ipykernel == "ask":
        hint = ("there is no terminal to ask on (CI, a pipe, a reconnect): install it, or set "
                f"kernel.install_ipykernel: yes, {others}")
    else:
        hint = f"install it, set kernel.install_ipykernel: yes, {others}"
    raise RemoteSetupError(
        f"the kernel's Python {python} has no ipykernel; install it with: {command}",
        hint=hint)


def _ask_agent(session: Session, settings: KernelSettings, agent_python: str, workdir: str,
               progress: Progress, *, install: bool) -> dict[str, Any]:
    config = {"python": settings.python, "setup": list(settings.setup), "workdir": workdir,
              "search": auto_search(), "install": install}
    timeout = INSTALL_TIMEOUT if install else CHECK_TIMEOUT
    process = start_agent(session, agent_python, "kernel")
    try:
        process.write_line(json.dumps(config))
        for message in follow_steps(process, progress, silence=timeout, stopped=STOPPED):
            if "progress" in message:
                progress(str(message["progress"]))
            elif "refused" in message:
                raise RemoteSetupError(str(message["refused"]), hint=message.get("hint"))
            elif "error" in message:
                hint = _HINTS.get(str(message.get("stage")), _HINTS["find"])
                raise RemoteSetupError(str(message["error"]), hint=hint,
                                       details=message.get("details") or None)
            elif message.get("ok"):
                return message
        raise RemoteSetupError(STOPPED)  # follow_steps ends only by raising
    finally:
        process.close()
