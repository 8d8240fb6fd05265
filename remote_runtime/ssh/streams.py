"""The byte streams a Transport runs over.

`ProxyCommandSocket` runs ProxyCommands as OpenSSH runs them on this OS;
`ReadAheadSocket` lets paramiko read a whole packet per system call instead of
one per field.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import IO, Any

from .. import procs
from ..errors import SSHError

READ_AHEAD = 256 * 1024
PUMP_CHUNK = 64 * 1024
WINDOWS = sys.platform == "win32"
CREATE_NO_WINDOW = 0x08000000  # subprocess defines it only on Windows


def proxy_argv(command: str, *, windows: bool = WINDOWS,
               environ: dict[str, str] | None = None) -> str | list[str]:
    """What OpenSSH executes for `ProxyCommand command` on this OS.

    POSIX (sshconnect.c): `$SHELL -c "exec command"`, /bin/sh when SHELL is unset or
    empty. Windows (Win32-OpenSSH): no shell; the command line goes to CreateProcess
    as written, which finds the program on PATH trying only `.exe` (so a batch file
    is named with its extension: `gcloud.cmd`). A string here is that command line.
    """
    if windows:
        return command
    shell = (os.environ if environ is None else environ).get("SHELL") or "/bin/sh"
    return [shell, "-c", f"exec {command}"]


def command_line(argv: list[str], *, windows: bool = WINDOWS) -> str:
    """A ProxyCommand that runs `argv` on this OS (quoted for `sh -c` on POSIX; for
    CreateProcess on Windows, with the program resolved on PATH and PATHEXT first,
    since CreateProcess itself would not find `gcloud.cmd` from `gcloud`)."""
    if not windows:
        return shlex.join(argv)
    program = shutil.which(argv[0]) or argv[0]
    return subprocess.list2cmdline([program, *argv[1:]])


class ProxyCommandSocket:
    """ProxyCommand's stdin/stdout as one end of a socketpair.

    The child must not see the terminal's Ctrl-C before teardown has stopped the
    remote server (DESIGN.md fact 8): on POSIX it runs in its own session, its
    stdin/stdout the socketpair's other end. On Windows, where a child can only be
    handed pipes, it runs with a hidden console of its own (no Ctrl-C or
    Ctrl-Break from ours, and no window popping up under a detached supervisor),
    and two threads pump between its pipes and the socketpair. It is closed last,
    by `Session.close()`.
    """

    def __init__(self, command: str, *, windows: bool = WINDOWS, pipes: bool | None = None):
        self.command = command
        pipes = windows if pipes is None else pipes
        ours, theirs = socket.socketpair()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._pumps: list[threading.Thread] = []
        spawn: dict[str, Any] = (
            {"creationflags": CREATE_NO_WINDOW} if windows else {"start_new_session": True})
        try:
            if pipes:
                self.process = subprocess.Popen(
                    proxy_argv(command, windows=windows), stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0, **spawn)
                self._start_pumps(theirs)
            else:
                self.process = subprocess.Popen(
                    proxy_argv(command, windows=windows), stdin=theirs.fileno(),
                    stdout=theirs.fileno(), stderr=self._stderr, close_fds=True, **spawn)
        except OSError as exc:
            ours.close()
            theirs.close()
            self._stderr.close()
            raise SSHError(f"cannot run ProxyCommand {command!r}: {exc}") from None
        if not pipes:
            theirs.close()
        self.sock = ours

    def _start_pumps(self, theirs: socket.socket) -> None:
        """Copy child stdout -> socket and socket -> child stdin until either side ends."""
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        child_in, child_out = process.stdin, process.stdout

        def outbound() -> None:  # the child's stdout to paramiko
            with contextlib.suppress(OSError, ValueError):
                while data := child_out.read(PUMP_CHUNK):
                    theirs.sendall(data)
            with contextlib.suppress(OSError):
                theirs.shutdown(socket.SHUT_WR)

        def inbound() -> None:  # paramiko to the child's stdin
            with contextlib.suppress(OSError, ValueError):
                while data := theirs.recv(PUMP_CHUNK):
                    child_in.write(data)
            with contextlib.suppress(OSError):
                child_in.close()

        for target, label in ((outbound, "out"), (inbound, "in")):
            thread = threading.Thread(target=target, name=f"proxy-{label}", daemon=True)
            thread.start()
            self._pumps.append(thread)
        self._theirs = theirs

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
            for pump in self._pumps:
                pump.join(timeout=3)
            if self._pumps:
                self._theirs.close()
                for stream in (self.process.stdin, self.process.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
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

    def take(self, n: int) -> memoryview | None:
        """The next `n` bytes if all are read ahead already, else None (nothing is taken).

        A view into the buffer, valid until the next `recv`: the caller uses it at once
        (forward.packets decrypts a packet from it without copying it first).
        """
        pos = self._pos
        if self._end - pos < n:
            return None
        self._pos = pos + n
        return self._area[pos:pos + n]

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
