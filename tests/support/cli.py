"""The CLI as a subprocess: its argv and environment, one-shot runs, `up` held in the
background with its output collected, and checks of what a failed command printed."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.env import REPO_ROOT


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "remote_runtime.cli", *args]


def cli_env() -> dict[str, str]:
    """The (isolated) environment of the current test, able to import the package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("COLUMNS", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for commands that fail fast or return)."""
    return subprocess.run(
        cli_argv(*args),
        capture_output=True,
        text=True,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


URL_MARK = "http://localhost:"


@dataclass
class UpProcess:
    """A running `remote-runtime up` (or another long command, `command=`), its output
    collected by two reader threads.

    It runs in its own process group, so `interrupt()` can signal the group the
    way a terminal's Ctrl-C does (the ProxyCommand child must survive that).
    """

    proc: subprocess.Popen[str]
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _events: queue.Queue[tuple[str, str | None]] = field(default_factory=queue.Queue)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, *args: str, env: dict[str, str] | None = None,
              command: str = "up") -> UpProcess:
        proc = subprocess.Popen(
            cli_argv(command, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=cli_env() if env is None else env,
            start_new_session=True,
        )
        up = cls(proc)
        for name, stream, sink in (
            ("out", proc.stdout, up.stdout_lines),
            ("err", proc.stderr, up.stderr_lines),
        ):
            thread = threading.Thread(target=up._read, args=(name, stream, sink), daemon=True)
            thread.start()
            up._threads.append(thread)
        return up

    def _read(self, name: str, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            self._events.put((name, line.rstrip("\n")))
        self._events.put((name, None))

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def describe(self) -> str:
        return (
            f"exit status {self.proc.poll()}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )

    def wait_for(self, predicate: Any, timeout: float, what: str) -> str:
        """Wait for an output line (stdout or stderr) matching `predicate`; return it."""
        for line in self.stdout_lines + self.stderr_lines:
            if predicate(line):
                return line
        deadline = time.monotonic() + timeout
        ended = set()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout:.0f}s; {self.describe()}")
            try:
                name, event = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if event is None:
                ended.add(name)
                if len(ended) == 2:
                    self.proc.wait(timeout=10)
                    raise AssertionError(f"`up` ended before {what}; {self.describe()}")
                continue
            if predicate(event):
                return event

    def wait_url(self, timeout: float = 240) -> tuple[int, str]:
        """Wait for the URL line; return (port, token)."""
        line = self.wait_for(lambda text: URL_MARK in text and "token=" in text, timeout, "URL")
        url = line.strip()
        port = int(url.removeprefix(URL_MARK).split("/", 1)[0])
        token = url.split("token=", 1)[1]
        return port, token

    def wait_ready(self, timeout: float = 240) -> tuple[int, str]:
        """Wait for the URL and the end of the instructions after it; return (port, token).

        `up` enters its wait loop right after the last line; the short pause keeps a
        signal sent now from landing in the few instructions before it.
        """
        port, token = self.wait_url(timeout)
        self.wait_for(lambda text: text.startswith("Press Ctrl-C"), 30, "'Press Ctrl-C' line")
        time.sleep(0.2)
        return port, token

    def interrupt(self) -> None:
        """Ctrl-C in a terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the exit and the end of its output; return the exit status."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"`up` did not exit within {timeout:.0f}s; {self.describe()}"
            ) from None
        for thread in self._threads:
            thread.join(timeout=10)
        return status

    def kill(self) -> None:
        """Kill what we started if it is still running (test failure cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)


def list_json(profiles: Path, *extra: str) -> dict[str, dict[str, Any]]:
    """`list --json` for a profiles file, as rows by name."""
    result = run_cli("list", "--json", "--profiles", str(profiles), *extra)
    assert result.returncode == 0, describe(result)
    return {row["name"]: row for row in json.loads(result.stdout)}


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (f"exit status {result.returncode}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}")


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def assert_one_error_line(result: subprocess.CompletedProcess[str], status: int,
                          *needles: str) -> str:
    """Exit `status`, exactly one `error:` line (plus at most a hint, after any progress
    lines), no traceback."""
    assert result.returncode == status, describe(result)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("- ")]
    errors = error_lines(result.stderr)
    assert len(errors) == 1, describe(result)
    assert len(lines) <= 2 and all(
        line.startswith(("error:", "hint:")) for line in lines), describe(result)
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in errors[0], describe(result)
    return errors[0]


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not within {timeout:.0f}s (last: {value!r})")
        time.sleep(interval)
