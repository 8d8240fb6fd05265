"""The byte streams a Transport runs over.

`ProxyCommandSocket` runs OpenSSH-style ProxyCommands; `ReadAheadSocket`
lets paramiko read a whole packet per system call instead of one per field.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO

from .. import procs
from ..errors import SSHError

READ_AHEAD = 256 * 1024


class ProxyCommandSocket:
    """ProxyCommand's stdin/stdout as one end of a socketpair.

    The child runs in its own session (DESIGN.md fact 8): Ctrl-C in the
    terminal must not kill it before teardown has stopped the remote server.
    It is closed last, by `Session.close()`.
    """

    def __init__(self, command: str):
        self.command = command
        ours, theirs = socket.socketpair()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {command}"],
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=self._stderr,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            ours.close()
            raise SSHError(f"cannot run ProxyCommand {command!r}: {exc}") from None
        finally:
            theirs.close()
        self.sock = ours

    def stderr_tail(self, limit: int = 400) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace").strip()[-limit:]
        except (OSError, ValueError):
            return ""

    def failure_detail(self) -> str:
        """Why the stream ended early: the exit status (if it ended) and its stderr."""
        try:
            status: int | None = self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            status = None
        parts = [] if status is None else [f"ProxyCommand exited with status {status}"]
        said = self.stderr_tail()
        if said:
            parts.append(f"ProxyCommand said: {said}")
        return "; ".join(parts)

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            procs.stop_child(self.process, timeout=3)
            self._stderr.close()


class ReadAheadSocket:
    """A socket whose recv reads ahead: paramiko asks for a packet in small
    pieces (length, then body, then MAC), each one a system call otherwise.
    Measured with scripts/bench.py: about 7% less CPU per GB through the forwarder."""

    def __init__(self, sock: socket.socket, size: int = READ_AHEAD):
        self._sock = sock
        # One buffer for every read: a fresh 256 KiB object per read, shrunk to what
        # came, fragments the heap of a long-lived tunnel (its memory kept creeping up).
        self._area = memoryview(bytearray(size))
        self._end = 0
        self._pos = 0
        # Called (by the transport's reader) before it reads the socket again, i.e. once
        # what was read ahead is used up: the forwarder sends what it held back then.
        self.before_read: Callable[[], None] | None = None

    def buffered(self) -> int:
        """Bytes read ahead and not yet handed out (more packets are on their way in)."""
        return self._end - self._pos

    def recv(self, n: int) -> bytes:
        if self._pos >= self._end:
            if self.before_read is not None:
                self.before_read()
            got = self._sock.recv_into(self._area)
            if got <= n:
                return bytes(self._area[:got])
            self._end, self._pos = got, 0
        end = min(self._pos + n, self._end)
        out = bytes(self._area[self._pos:end])
        self._pos = end
        return out

    def send(self, data: bytes) -> int:
        """Send without the readiness poll that a socket with a timeout makes first.

        paramiko gives its socket a timeout, so every send() was a poll() then a send().
        The descriptor is non-blocking underneath: try the write at once, and wait (the
        socket's own send) only when the kernel's buffer is full.
        """
        if _DIRECT_WRITE:
            try:
                return os.write(self._sock.fileno(), data)
            except (BlockingIOError, InterruptedError):
                pass
        return self._sock.send(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


# Sockets are plain descriptors that write() accepts everywhere but on Windows.
_DIRECT_WRITE = sys.platform != "win32"
