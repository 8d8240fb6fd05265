"""Detached runtimes: a background supervisor that owns the tunnel.

`spawn()` (run by `up --detach`) starts our own hidden entry point,
`remote-runtime _supervise NAME`, detached the way the OS detaches a process: a
new session on POSIX; on Windows a new process group without a console
(`DETACHED_PROCESS`), out of the terminal's job where the job allows it. The
supervisor brings the runtime up and reports on its stdout as JSON lines
(progress, then `ready` or `error`); after `ready` it writes only to its log
file. It keeps the runtime alive: on a lost connection it reconnects with
backoff while the local port stays bound and the remote server keeps running
under its lease. A stop request from `down` (`stops`, every OS) or a stopping
signal (SIGTERM, SIGHUP, SIGINT on POSIX; SIGINT, SIGBREAK on Windows) makes it
tear down through the same `finally` as the foreground.

Once up, its log and state-record writes are best effort: a full disk or a
read-only state directory must not end a runtime the user is working in. A
failing write is said once (in the log, when it can be written again).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

from . import paths, procs, state, stops
from .errors import (
    ExitCode,
    RemoteRuntimeError,
    SSHError,
    StateError,
)
from .options import Step, UpOptions
from .profiles import Profile
from .runtime import Runtime, RuntimeInfo

BACKOFF_MAX = 30.0


def log_path(name: str) -> Path:
    """Where a detached runtime's supervisor logs (also read by `up --detach`)."""
    return paths.ensure_private_dir(paths.log_dir()) / f"{name}.log"


class _Log:
    """The supervisor's log file, written line by line, best effort.

    A line that cannot be written (disk full, directory read-only) is dropped, not
    kept in memory; the next line that can be written first says how many were lost,
    since when and why, once per such stretch.
    """

    def __init__(self, name: str):
        self._fd: int | None = None
        self._lost = 0
        self._since = ""
        self._why = ""
        try:
            self._fd = os.open(log_path(name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            self._failed(exc)

    def write(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n"
        if self._fd is None:
            return
        try:
            if self._lost:
                os.write(self._fd, (f"{time.strftime('%Y-%m-%dT%H:%M:%S')} log: {self._lost} "
                                    f"line(s) could not be written since {self._since} "
                                    f"({self._why}); the runtime kept running\n").encode())
                self._lost = 0
            os.write(self._fd, line.encode())
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if not self._lost:
            self._since = time.strftime("%Y-%m-%dT%H:%M:%S")
            self._why = exc.strerror or str(exc)
        self._lost += 1

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class _Channel:
    """The supervisor's voice: JSON lines to the parent until ready, then the log."""

    def __init__(self, stdout: IO[str], log: _Log):
        self.stdout: IO[str] | None = stdout
        self.log = log

    def _log(self, text: str) -> None:
        self.log.write(text)

    def progress(self, message: str) -> None:
        if isinstance(message, Step):  # counted steps: the parent draws them, the log
            if message.finished or message.done == 0:  # keeps the first and the last
                self._log(message)
            self._send({"progress": message, "step": message.to_dict()})
            return
        self._log(message)
        self._send({"progress": message})

    def started(self) -> None:
        """Tell the parent our pid (on Windows a venv's python.exe is a launcher whose
        child runs us, so the parent's Popen pid is not ours)."""
        self._send({"started": os.getpid()})

    def _send(self, obj: dict[str, Any]) -> None:
        if self.stdout is None:
            return
        try:
            self.stdout.write(json.dumps(obj) + "\n")
            self.stdout.flush()
        except (OSError, ValueError):
            self.stdout = None  # the parent went away; keep going, log only

    def ready(self, info: RuntimeInfo) -> None:
        self._log(f"ready on port {info.port} (run {info.run_id})")
        self._send({"ready": info.to_dict(show_token=True)})
        if self.stdout is not None:
            self.stdout.close()
        self.stdout = None
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    def error(self, exc: RemoteRuntimeError) -> None:
        self._log(f"error: {exc.message}")
        self._send({"error": exc.message, "hint": exc.hint, "details": exc.details,
                    "exit_code": int(exc.exit_code)})

    def note(self, text: str) -> None:
        self._log(text)


class _RelayPrompter:
    """Questions of the login relayed to the `up --detach` that started us (it has the
    terminal): a JSON line out, the answer as a JSON line on our stdin. Answers are
    never logged."""

    def __init__(self, channel: _Channel, answers: IO[str]):
        self.channel = channel
        self.answers = answers
        self._lock = threading.Lock()

    def ask(self, prompt: str, *, echo: bool) -> str:
        with self._lock:
            self.channel._send({"prompt": prompt, "echo": echo})
            line = self.answers.readline()
        if not line:
            raise EOFError
        message = json.loads(line)
        if message.get("cancel"):
            raise KeyboardInterrupt
        return str(message.get("answer", ""))

    def show(self, text: str) -> None:
        self.channel._send({"show": text})


def supervise(profile: Profile, options: UpOptions, *, relay_prompts: bool = False) -> int:
    """The hidden `_supervise` command: up, keep up, tear down when asked to stop.

    With `relay_prompts`, questions of the login (passphrase, one-time code) go to
    the parent's terminal until the runtime is ready; reconnects later ask nobody."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, *procs.stopping_signals()):
        signal.signal(sig, on_signal)
    log_file = _Log(profile.name)
    channel = _Channel(sys.stdout, log_file)
    prompter = _RelayPrompter(channel, sys.stdin) if relay_prompts else None
    runtime = Runtime(profile, options, progress=channel.progress, detached=True,
                      log_path=str(log_path(profile.name)), prompter=prompter)

    def on_request() -> None:
        channel.note("stop requested (remote-runtime down)")
        stop.set()

    watcher = stops.Watcher(profile.name, os.getpid(), on_request)
    watcher.start()
    channel.started()
    status = 0
    try:
        info = _start_interruptibly(runtime, stop)
        if info is None:
            channel.error(RemoteRuntimeError("stopped before the runtime was up"))
            return int(ExitCode.INTERRUPTED)
        runtime.prompter = None  # nobody to ask once `up --detach` has returned
        channel.ready(info)
        keep_alive(runtime, stop, channel.note)
        if runtime.ended:  # the VM's agent stopped the server (idle): say why in the log
            channel.note(runtime.ended)
    except RemoteRuntimeError as exc:
        channel.error(exc)
        status = int(exc.exit_code)
    finally:
        watcher.close()
        for line in runtime.close():
            channel.note(f"teardown: {line}")
        log_file.close()
    return status


def _start_interruptibly(runtime: Runtime, stop: threading.Event) -> RuntimeInfo | None:
    """Start in a thread so SIGTERM during a long install still tears down."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["info"] = runtime.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="runtime-start", daemon=True)
    thread.start()
    while thread.is_alive():
        if stop.wait(0.2):
            # The caller's close() cancels start() (cuts the connection, stops waiting
            # for a VM), waits for it to unwind, then releases what it had acquired.
            return None
    if "error" in result:
        raise result["error"]
    info: RuntimeInfo = result["info"]
    return info


def keep_alive(runtime: Runtime, stop: threading.Event, note: Callable[[str], None]) -> None:
    """Wait until stopped; on a lost connection reconnect with backoff until the
    remote server's lease would have run out."""
    lease = runtime.profile.jupyter.lease_seconds
    reconnects = 0
    while not stop.is_set():
        try:
            runtime.wait(stop)
            return
        except SSHError as exc:
            note(f"{exc.message}; reconnecting")
        lost_at, delay = time.monotonic(), 1.0
        while not stop.is_set():
            if time.monotonic() - lost_at > lease:
                raise SSHError(f"could not reconnect within the lease ({lease}s); "
                               "the remote server has stopped itself")
            try:
                runtime.reconnect()  # RemoteSetupError (server gone) ends the supervisor
            except SSHError as exc:
                note(f"reconnect failed: {exc.message}; next try in {delay:.0f}s")
                stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            reconnects = _count_reconnect(runtime.profile.name, reconnects, note)
            note(f"reconnected (reconnect #{reconnects})")
            break


def _count_reconnect(name: str, before: int, note: Callable[[str], None]) -> int:
    """Record one more reconnect; best effort (a full disk must not end the runtime)."""
    count = before + 1
    try:
        record = state.get(name)
        count = max(before, record.reconnects if record else 0) + 1
        state.update(name, reconnects=count)
    except (OSError, StateError) as exc:
        note(f"could not update the state record ({getattr(exc, 'message', exc)}); "
             "the runtime keeps running; `list` may show an older reconnect count")
    return count
