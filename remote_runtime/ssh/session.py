"""A connected SSH session: run commands, start long-running ones, ping, close.

`connect` (in `ssh.connect`) returns a `Session`; every remote command of the
tool goes through `Session.run` or `Session.start`, and every value in those
commands is quoted with `quote` first.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from ..errors import SSHError
from ..lifecycle import Closing
from .config import Target


@dataclass
class CommandResult:
    status: int
    stdout: str
    stderr: str


class RemoteProcess:
    """A long-running remote command with line-based stdin/stdout."""

    def __init__(self, channel: paramiko.Channel):
        self._channel = channel
        self._file = channel.makefile("rb")
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        """Send one line to the process's stdin; raises SSHError if the channel is gone."""
        with self._lock:
            try:
                self._channel.sendall((line + "\n").encode())
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise SSHError(f"lost the remote process: {exc}") from None

    def read_line(self, timeout: float) -> str | None:
        """One line of stdout without its newline; None at end of output."""
        self._channel.settimeout(timeout)
        try:
            raw = self._file.readline()
        except TimeoutError:
            raise SSHError(f"no answer from the remote process within {timeout:.0f}s") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"lost the remote process: {exc}") from None
        if not raw:
            return None
        return bytes(raw).decode(errors="replace").rstrip("\n")

    @property
    def closed(self) -> bool:
        return self._channel.closed or self._channel.exit_status_ready()

    def read_stderr(self) -> str:
        chunks = []
        while self._channel.recv_stderr_ready():
            chunks.append(self._channel.recv_stderr(65536))
        return b"".join(chunks).decode(errors="replace")

    def close(self) -> None:
        self._channel.close()


class Session(Closing):
    """An authenticated SSH connection (started when made). Close it to release everything."""

    def __init__(
        self,
        transport: paramiko.Transport,
        target: Target,
        closers: list[Callable[[], None]],
    ):
        self.transport = transport
        self.target = target
        self._closers = closers

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def ping(self, timeout: float) -> bool:
        """Ask the server for an answer (keepalive@openssh.com) within `timeout`.

        paramiko's own keepalive wants no reply, so a path that silently
        drops packets (a sleeping laptop, a dead Wi-Fi) is only noticed here.
        """
        answered = threading.Event()

        def send() -> None:
            try:
                self.transport.global_request("keepalive@openssh.com", wait=True)
            except (OSError, EOFError, paramiko.SSHException):
                return
            answered.set()

        threading.Thread(target=send, name="ssh-ping", daemon=True).start()
        return answered.wait(timeout) and self.transport.is_active()

    def run(
        self, command: str, *, stdin: str | None = None, timeout: float = 60.0
    ) -> CommandResult:
        """Run `command` through the remote user's shell and wait for it.

        `command` must already be quoted (shlex.quote every value). Raises
        SSHError when the connection fails or the command outlives `timeout`.
        """
        try:
            channel = self.transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while not (channel.exit_status_ready() and not channel.recv_ready()
                       and not channel.recv_stderr_ready()):
                if time.monotonic() > deadline:
                    channel.close()
                    raise SSHError(f"remote command timed out after {timeout:.0f}s")
                if channel.recv_ready():
                    out += channel.recv(65536)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                else:
                    time.sleep(0.01)
            status = channel.recv_exit_status()
            channel.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"lost the SSH connection to {self.target.alias}: {exc}") from None
        return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))

    def start(self, command: str) -> RemoteProcess:
        """Start a long-running command whose stdin/stdout stay open."""
        try:
            channel = self.transport.open_session(timeout=30)
            channel.exec_command(command)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"lost the SSH connection to {self.target.alias}: {exc}") from None
        return RemoteProcess(channel)

    def close(self) -> None:
        """Close the transport, then any jump host and ProxyCommand (last)."""
        try:
            self.transport.close()
        finally:
            for closer in reversed(self._closers):
                with contextlib.suppress(Exception):  # best effort on teardown
                    closer()


def quote(value: str) -> str:
    """Quote one value for the remote POSIX shell."""
    return shlex.quote(value)
