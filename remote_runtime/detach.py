"""`up --detach`: start a supervisor (`supervisor`) detached the way the OS detaches a
process, relay its progress and login questions to this terminal, and return its
`ready` info (or raise its error, with its exit code).

POSIX: a new session; Windows: a new process group without a console
(`DETACHED_PROCESS`), out of the terminal's job where the job allows it. Ctrl-C while
it starts sends it a stop request, as `down` does.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import paths, procs, stops
from .errors import ExitCode, RemoteRuntimeError
from .options import Progress, Step, UpOptions
from .ssh import Prompter
from .supervisor import log_path

STARTING_STOP_WAIT = 120.0  # a supervisor interrupted mid-install unwinds, then tears down


def spawn(name: str, profiles_path: Path, options: UpOptions,
          progress: Progress, prompter: Prompter | None = None) -> dict[str, Any]:
    """Start a supervisor and relay its progress; return its `ready` info.

    With a `prompter` (a terminal), the supervisor's login questions (passphrase,
    one-time code, password) are asked here before this returns.
    Raises the supervisor's error (with its exit code) if it fails to come up.
    """
    argv = [sys.executable, "-m", "remote_runtime.cli", "_supervise", name,
            "--profiles", str(profiles_path), "--options", options.to_json()]
    if prompter is not None:
        argv.append("--relay-prompts")
    try:
        log = log_path(name)
        err: IO[str] | int = log.open("a", encoding="utf-8")
    except OSError:  # the supervisor's claim of the state dir says what is wrong
        log, err = paths.log_dir() / f"{name}.log", subprocess.DEVNULL
    try:
        process = _start_detached(
            argv, stdin=subprocess.PIPE if prompter is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=err, text=True)
    finally:
        if not isinstance(err, int):
            err.close()
    assert process.stdout is not None
    owner = process.pid
    try:
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "started" in message:
                owner = int(message["started"])
            elif "ready" in message:
                info: dict[str, Any] = message["ready"]
                info["pid"] = owner
                info["log"] = str(log)
                return info
            else:
                _relay(message, process, progress, prompter)
        status = process.wait(timeout=120)
        raise RemoteRuntimeError(f"the supervisor exited ({status}) before the runtime was up",
                                 hint=f"see {log}")
    except KeyboardInterrupt:
        _stop_starting(name, owner, process)
        raise
    finally:
        process.stdout.close()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()


def _relay(message: dict[str, Any], process: subprocess.Popen[str], progress: Progress,
           prompter: Prompter | None) -> None:
    """One message of a starting supervisor: a question, progress, or its error (raised)."""
    if "prompt" in message or "show" in message:
        _answer(process, prompter, message)
    elif "step" in message:
        progress(Step(**message["step"]))
    elif "progress" in message:
        progress(str(message["progress"]))
    elif "error" in message:
        error = RemoteRuntimeError(message["error"], hint=message.get("hint"),
                                   details=message.get("details"))
        error.exit_code = ExitCode(message.get("exit_code", ExitCode.ERROR))
        process.wait(timeout=120)
        raise error


def _stop_starting(name: str, pid: int, process: subprocess.Popen[str]) -> None:
    """Ctrl-C while a supervisor starts: ask it as `down` does (a stop request reaches it
    on every OS; on Windows it has no console for Ctrl-C and no SIGTERM to catch). It tears
    down what it started, which may take a while, then ends."""
    stops.request(name, pid)
    try:
        process.wait(timeout=STARTING_STOP_WAIT)
    except subprocess.TimeoutExpired:
        procs.stop_child(process, timeout=5)
    finally:
        stops.withdraw(name)


# Windows process creation flags (subprocess defines them only on Windows).
DETACHED_PROCESS = 0x00000008
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_BREAKAWAY_FROM_JOB = 0x01000000


def detach_options(windows: bool) -> list[dict[str, Any]]:
    """Popen keyword sets that detach a process, in the order to try them.

    POSIX: a new session (no controlling terminal; the terminal's SIGHUP and Ctrl-C
    do not reach it). Windows: no console (so no Ctrl-C, Ctrl-Break or console-close
    event) in a process group of its own, and out of the terminal's job object so
    closing the terminal does not end it; a job that forbids breakaway refuses that
    flag, so the second set goes without it.
    """
    if not windows:
        return [{"start_new_session": True}]
    flags = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
    return [{"creationflags": flags | CREATE_BREAKAWAY_FROM_JOB}, {"creationflags": flags}]


def _start_detached(argv: list[str], *, windows: bool = sys.platform == "win32",
                    popen: Callable[..., subprocess.Popen[str]] = subprocess.Popen,
                    **kwargs: Any) -> subprocess.Popen[str]:
    choices = detach_options(windows)
    for index, extra in enumerate(choices):
        try:
            return popen(argv, **kwargs, **extra)
        except PermissionError:  # ERROR_ACCESS_DENIED: the job forbids breakaway
            if index + 1 == len(choices):
                raise
    raise AssertionError("unreachable")


def _answer(process: subprocess.Popen[str], prompter: Prompter | None,
            message: dict[str, Any]) -> None:
    """Ask the supervisor's question on our terminal and send the answer back."""
    if prompter is None or process.stdin is None:
        return
    if "show" in message:
        prompter.show(str(message["show"]))
        return
    try:
        answer = prompter.ask(str(message["prompt"]), echo=bool(message.get("echo")))
        reply: dict[str, Any] = {"answer": answer}
    except EOFError:
        reply = {"cancel": True}
    try:
        process.stdin.write(json.dumps(reply) + "\n")
        process.stdin.flush()
    except OSError:
        pass  # the supervisor is gone; its error line (or exit) follows
