"""Helpers for the forwarder's tests: real target servers on 127.0.0.1, client sockets,
a bare paramiko transport to a sandbox sshd, and what the forwarder leaves behind."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import paramiko

from remote_runtime.ssh.streams import ReadAheadSocket
from sandbox.sshd import Sshd

GCM = "aes128-gcm@openssh.com"
TIMEOUT = 20.0


def wait_for(check: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def forwarder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("forwarder-")]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class TargetServer:
    """A threaded TCP server on 127.0.0.1:0 running `handler` for every connection."""

    def __init__(self, handler: Callable[[socket.socket], None], *, listen: bool = True) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.thread: threading.Thread | None = None
        self.handled = 0
        if listen:
            self.listen()

    def listen(self) -> None:
        """Start accepting (until then the bound port refuses connections)."""
        self.sock.listen(1024)
        self.thread = threading.Thread(target=self._loop, name="target-accept", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), name="target", daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(TIMEOUT)
            self.handler(conn)
        self.handled += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.thread is not None:
            self.thread.join(TIMEOUT)


@contextlib.contextmanager
def target(handler: Callable[[socket.socket], None]) -> Iterator[TargetServer]:
    server = TargetServer(handler)
    try:
        yield server
    finally:
        server.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(1 << 16):
        conn.sendall(data)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def recv_all(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    chunks = []
    size = 0
    while size < limit:
        data = sock.recv(1 << 20)
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def connect(port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def open_transport(server: Sshd, *, read_ahead: bool = True) -> paramiko.Transport:
    """A paramiko transport over the socket `up` uses (read-ahead, TCP_NODELAY), or a
    plain socket; the host key must be the sandbox's, AES-GCM preferred."""
    assert server.port is not None
    sock = socket.create_connection(("127.0.0.1", server.port), 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream: socket.socket | ReadAheadSocket = ReadAheadSocket(sock) if read_ahead else sock
    transport = paramiko.Transport(stream)  # type: ignore[arg-type]
    try:
        options = transport.get_security_options()
        options.ciphers = (GCM, *(c for c in options.ciphers if c != GCM))
        transport.start_client(timeout=10)
        key = transport.get_remote_server_key()
        key_type, key_b64 = server.host_key_line.split()[:2]
        if (key.get_name(), key.get_base64()) != (key_type, key_b64):
            raise AssertionError("sshd host key does not match the sandbox's")
        client_key = paramiko.Ed25519Key.from_private_key_file(str(server.client_key))
        transport.auth_publickey(server.user, client_key)
    except BaseException:
        transport.close()
        raise
    return transport


def session_dropped(server: Sshd, offset: int = 0) -> list[str]:
    """sshd's log lines (from byte `offset`) saying it dropped a client's session."""
    try:
        with server.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return [
        line for line in text.splitlines()
        if "nonexistent channel" in line or "Disconnecting" in line
        or "Timeout, client not responding" in line
    ]


def log_size(server: Sshd) -> int:
    try:
        return server.log_path.stat().st_size
    except OSError:
        return 0
