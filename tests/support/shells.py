"""Login shells of every kind, on this machine: a stand-in for the SSH session that hands
each command to the user's login shell (`shell -c COMMAND`, as sshd does), with a HOME
whose startup files print, as real ones do.

The shells are real; only the transport is not (tests/unit/test_remote.py covers a real
SSH transport with mockssh).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

from remote_runtime.errors import SSHError
from remote_runtime.ssh import CommandResult
from support.env import unavailable

# Login shells that parse differently (csh is tcsh on Debian, sh is dash or bash).
SHELLS = ("sh", "bash", "zsh", "tcsh", "fish")

# Each greets on stdout for every command (the last one without a newline), as the
# startup files of many lab machines do.
CHATTY_FILES = {
    ".bashrc": 'echo "Welcome from .bashrc"\nprintf "no newline from .bashrc"\n',
    ".zshenv": 'echo "hello from .zshenv"\n',  # zsh reads it for every command
    ".cshrc": 'echo "hello from .cshrc"\n',
    ".config/fish/config.fish": 'echo "hello from config.fish"\n',
}


def shell_path(name: str) -> str:
    """The path of shell `name`; CI must have every one (scripts/setup.sh installs them)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"the {name} shell (scripts/setup.sh installs it)")
    return path


def chatty_home(root: Path) -> Path:
    home = root / "login-home"
    for relative, text in CHATTY_FILES.items():
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return home


class LocalProcess:
    """`ssh.RemoteProcess`'s interface over a local process."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self._proc = proc
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            self._lines.put(raw)
        self._lines.put(None)

    def write_line(self, line: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write((line + "\n").encode())
            self._proc.stdin.flush()
        except OSError as exc:
            raise SSHError(f"lost the remote process: {exc}") from None

    def read_line(self, timeout: float) -> str | None:
        try:
            raw = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise SSHError(f"no answer from the remote process within {timeout:.0f}s") from None
        if raw is None:
            self._lines.put(None)
            return None
        return raw.decode(errors="replace").rstrip("\n")

    @property
    def closed(self) -> bool:
        return self._proc.poll() is not None

    def read_stderr(self) -> str:
        return ""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class LocalShellSession:
    """`ssh.Session.run`/`start` through `shell -c`, with `home` as HOME (and its .bashrc
    read by bash, as sshd's non-interactive bash reads it)."""

    def __init__(self, shell: str, home: Path):
        self.shell = shell
        self.env = {**os.environ, "HOME": str(home), "SHELL": shell}
        self.env.pop("XDG_CONFIG_HOME", None)  # fish reads ~/.config/fish, as on a real host
        if os.path.basename(shell) == "bash":
            self.env["BASH_ENV"] = str(home / ".bashrc")
        self.home = home
        self.started: list[LocalProcess] = []

    def run(self, command: str, *, stdin: str | None = None,
            timeout: float = 60.0) -> CommandResult:
        done = subprocess.run([self.shell, "-c", command], input=(stdin or "").encode(),
                              capture_output=True, env=self.env, cwd=self.home,
                              timeout=timeout, check=False)
        return CommandResult(done.returncode, done.stdout.decode(errors="replace"),
                             done.stderr.decode(errors="replace"))

    def start(self, command: str) -> LocalProcess:
        proc = subprocess.Popen([self.shell, "-c", command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=self.env, cwd=self.home)
        process = LocalProcess(proc)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            process.close()
