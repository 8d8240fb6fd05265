"""Shared fixtures: an isolated environment for every test, the sandbox host, `up` runs.

Every test gets its own HOME and XDG dirs under tmp_path, without
REMOTE_RUNTIME_PROFILES or an ssh-agent, so nothing reads the real ~/.ssh or
state. Two caches are deliberately kept outside that isolation (computed from
the real home at import time) because building them takes seconds to minutes:
the local Jupyter stack venv of test_health (`$REMOTE_RUNTIME_TEST_CACHE`) and
the sandbox's remote cache, where the managed Jupyter venv lives.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from remote_runtime.sandbox import Sandbox, netns, to_yaml
from remote_runtime.sandbox.common import SandboxError, find_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_HOME = Path.home()
TEST_CACHE = Path(
    os.environ.get("REMOTE_RUNTIME_TEST_CACHE") or REAL_HOME / ".cache" / "remote-runtime-tests"
)
SANDBOX_REMOTE_CACHE = TEST_CACHE / "sandbox-remote"

# Variables that would let a test see the real user's configuration or agent.
_LEAKY_VARS = (
    "REMOTE_RUNTIME_PROFILES",
    "REMOTE_RUNTIME_CONFIG_DIR",
    "REMOTE_RUNTIME_STATE_DIR",
    "REMOTE_RUNTIME_CACHE_DIR",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
)


@dataclass(frozen=True)
class Isolated:
    home: Path
    config: Path  # XDG_CONFIG_HOME
    state: Path  # XDG_STATE_HOME
    cache: Path  # XDG_CACHE_HOME

    @property
    def state_files(self) -> list[Path]:
        """Every file under the state dir but lock files (a clean failure leaves none)."""
        return sorted(p for p in self.state.rglob("*") if p.is_file() and p.name != ".lock")

    @property
    def runtime_records(self) -> list[Path]:
        return sorted((self.state / "remote-runtime" / "runtimes").glob("*.json"))


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Isolated:
    dirs = Isolated(
        home=tmp_path / "home",
        config=tmp_path / "xdg-config",
        state=tmp_path / "xdg-state",
        cache=tmp_path / "xdg-cache",
    )
    for path in (dirs.home, dirs.config, dirs.state, dirs.cache):
        path.mkdir()
    monkeypatch.setenv("HOME", str(dirs.home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(dirs.config))
    monkeypatch.setenv("XDG_STATE_HOME", str(dirs.state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(dirs.cache))
    # jupyter_venv.py reads this at call time; keep its venv cache shared.
    monkeypatch.setenv("REMOTE_RUNTIME_TEST_CACHE", str(TEST_CACHE))
    for var in _LEAKY_VARS:
        monkeypatch.delenv(var, raising=False)
    return dirs


# --- the sandbox host ---------------------------------------------------------------------


def unavailable(reason: str) -> None:
    """Fail in CI (the real parts must run there), skip with the reason elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_netns_sandbox() -> None:
    try:
        find_binary("sshd", "/usr/sbin/sshd", hint="")
    except SandboxError:
        unavailable("OpenSSH sshd is missing (apt-get install openssh-server)")
    reason = netns.unavailable_reason()
    if reason:
        unavailable(f"network namespaces unavailable: {reason}")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A real OpenSSH sshd in its own network namespace, for the whole session."""
    require_netns_sandbox()
    SANDBOX_REMOTE_CACHE.mkdir(parents=True, exist_ok=True)
    with Sandbox(
        tmp_path_factory.mktemp("sandbox"), mode="netns", remote_cache_dir=SANDBOX_REMOTE_CACHE
    ) as box:
        yield box


def write_profiles(
    path: Path,
    profiles: dict[str, dict[str, Any]],
) -> Path:
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
) -> dict[str, Any]:
    """A profile body for the sandbox; `port=None` leaves jupyter.port out (the default)."""
    body = box.profile(name, port or 8888)
    if port is None:
        del body["jupyter"]["port"]
    body["ssh"].update(ssh or {})
    body["jupyter"].update(jupyter or {})
    return body


# --- running the CLI as a subprocess ----------------------------------------------------


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
    """A running `remote-runtime up`, its output collected by two reader threads.

    It runs in its own process group, so `interrupt()` can signal the group the
    way a terminal's Ctrl-C does (the ProxyCommand child must survive that).
    """

    proc: subprocess.Popen[str]
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _events: queue.Queue[tuple[str, str | None]] = field(default_factory=queue.Queue)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, *args: str) -> UpProcess:
        proc = subprocess.Popen(
            cli_argv("up", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=cli_env(),
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


@pytest.fixture
def start_up() -> Iterator[Any]:
    """Start `up` processes; any still running when the test ends are killed."""
    started: list[UpProcess] = []

    def start(*args: str) -> UpProcess:
        up = UpProcess.start(*args)
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill()


def port_closed(port: int, host: str = "127.0.0.1") -> bool:
    """True when a connection to host:port is refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return host == "::1"  # no IPv6 loopback here: nothing can listen on it
        return False
