"""The package-index egress of a sandbox namespace (DESIGN.md fact 8).

A fresh network namespace has no network. `ConnectProxy` runs in this process (host
namespace) on a unix socket and allows only `CONNECT` to port 443 of the package index;
`Relay` is a child process inside the namespace that listens on the namespace's
127.0.0.1 and pipes every connection to that socket (the filesystem is shared, so the
socket crosses namespaces). Run the relay side as
`python -m sandbox.proxy relay --listen 127.0.0.1:0 --unix PATH`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from remote_runtime import procs
from remote_runtime.lifecycle import Resource
from sandbox.common import SandboxError
from sandbox.streams import Server, pipe

ALLOWED: frozenset[tuple[str, int]] = frozenset(
    {("pypi.org", 443), ("files.pythonhosted.org", 443)}
)
MAX_HEAD = 8192
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ConnectProxy(Server):
    """An HTTP CONNECT proxy on a unix socket that allows only the package index on 443."""

    def __init__(
        self,
        socket_path: Path,
        *,
        allowed: frozenset[tuple[str, int]] = ALLOWED,
        max_connections: int = 64,
        connect_timeout: float = 15.0,
    ) -> None:
        super().__init__(max_connections)
        self.socket_path = Path(socket_path)
        self.allowed = allowed
        self.connect_timeout = connect_timeout
        # Recent decisions ("allow pypi.org:443", "deny example.com:443") for tests and logs.
        self.events: collections.deque[str] = collections.deque(maxlen=200)


    def start(self) -> None:
        """Listen on the unix socket (replacing a stale one) and serve in threads."""
        self._started = True
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            listener.listen(64)
        except OSError as exc:
            listener.close()
            raise SandboxError(f"cannot listen on {self.socket_path}: {exc}") from exc
        self._serve(listener)

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        super().close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _refuse(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(_response(503, "Too Many Connections"))
        conn.close()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        head, rest = _read_head(conn)
        conn.settimeout(None)
        target = _connect_target(head)
        if target is None:
            self.events.append(f"deny {head.split(b' ', 2)[:2]!r}")
            conn.sendall(_response(403, "Forbidden"))
            return
        host, port = target
        if (host, port) not in self.allowed:
            self.events.append(f"deny {host}:{port}")
            conn.sendall(_response(403, "Forbidden"))
            return
        try:
            upstream = socket.create_connection((host, port), timeout=self.connect_timeout)
        except OSError as exc:
            self.events.append(f"fail {host}:{port} {exc}")
            conn.sendall(_response(502, "Bad Gateway"))
            return
        self.events.append(f"allow {host}:{port}")
        self.track(upstream)
        with upstream:
            upstream.settimeout(None)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            pipe(conn, upstream, self._stop)


def _response(status: int, reason: str) -> bytes:
    body = f"{status} {reason}\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """The request head up to the blank line, and whatever bytes followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            break
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _connect_target(head: bytes) -> tuple[str, int] | None:
    """(host, port) of a `CONNECT host:port HTTP/1.x` request line, else None."""
    words = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(words) != 3 or words[0] != "CONNECT" or not words[2].startswith("HTTP/1."):
        return None
    host, sep, port = words[1].rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.lower().rstrip("."), int(port)


class _RelayServer(Server):
    """Inside the namespace: TCP on loopback, each connection piped to the unix socket."""

    def __init__(self, unix_path: str, max_connections: int = 64) -> None:
        super().__init__(max_connections)
        self.unix_path = unix_path

    def listen(self, host: str, port: int) -> int:
        listener = socket.create_server((host, port))
        self._serve(listener)
        return int(listener.getsockname()[1])

    def handle(self, conn: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.track(upstream)
        with upstream:
            upstream.connect(self.unix_path)
            pipe(conn, upstream, self._stop)

    def wait(self) -> None:
        """Block until request_stop()."""
        self._stop.wait()


class Relay(Resource):
    """The relay child process, started inside `namespace` (or here when None)."""

    def __init__(
        self, socket_path: Path, *, namespace: str | None, log_path: Path, host: str = "127.0.0.1"
    ) -> None:
        self.socket_path = Path(socket_path)
        self.namespace = namespace
        self.log_path = Path(log_path)
        self.host = host
        self.port: int | None = None
        self.proc: subprocess.Popen[str] | None = None


    def start(self, timeout: float = 10.0) -> None:
        """Start the relay on port 0 and read back the port it bound."""
        self._started = True
        argv = [sys.executable, "-m", "sandbox.proxy", "relay"]
        argv += ["--listen", f"{self.host}:0", "--unix", str(self.socket_path), "--watch-stdin"]
        if self.namespace:
            argv = ["ip", "netns", "exec", self.namespace, *argv]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with self.log_path.open("a") as log:
            # Own session: a Ctrl-C meant for the demo must not kill the relay before teardown.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            line = self.proc.stdout.readline() if sel.select(timeout) else ""
        if not line.startswith("listening "):
            self.close()
            raise SandboxError(f"the pip relay did not start (log {self.log_path})")
        self.port = int(line.split()[1].rpartition(":")[2])

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def close(self) -> None:
        """Terminate, wait, kill the relay process we started."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        procs.stop_child(proc)


def _relay_main(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    server = _RelayServer(args.unix)
    bound = server.listen(host, int(port))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.watch_stdin:
        # Exit with the parent: its end of our stdin closes when it dies.
        def watch() -> None:
            sys.stdin.read()
            server.request_stop()

        threading.Thread(target=watch, daemon=True).start()
    print(f"listening {host}:{bound}", flush=True)
    server.wait()
    server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `relay --listen HOST:PORT --unix PATH`."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.proxy")
    sub = parser.add_subparsers(dest="command", required=True)
    relay = sub.add_parser("relay", help="pipe TCP connections on HOST:PORT to a unix socket")
    relay.add_argument("--listen", required=True, help="HOST:PORT (port 0 picks one)")
    relay.add_argument("--unix", required=True, help="the CONNECT proxy's unix socket")
    relay.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = parser.parse_args(argv)
    return _relay_main(args)


if __name__ == "__main__":
    sys.exit(main())
