"""Local port forwarding over one paramiko transport: our own `ssh -L`.

A `Forwarder` listens on loopback only (127.0.0.1, and ::1 when the machine has
it) and opens one ``direct-tcpip`` channel per accepted connection. Each
connection is served by two threads, one per direction, each doing blocking
reads and writes: that keeps both directions flowing at once and needs no
``select`` (which would cost a pipe per channel and syscalls per packet).

Flow control is paramiko's: a channel only grants the server more window as we
read from it, so a slow local client throttles the remote sender. We always
read everything the channel has buffered in one call, and swap paramiko's
receive byte array for a list of the received chunks, which saves two copies of
every byte (about a fifth of the CPU per GB; see BENCHMARK.md). The rest of the
cost is paramiko's transport thread, which we leave alone.

The parts: `listen` binds the loopback listeners, `connection` pumps one
connection, `buffer` is the chunk list. The tuning constants
below are read here, at use, so scripts/bench_tunnel.py can set them.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time

import paramiko

from ..lifecycle import Resource
from .buffer import use_chunk_buffer
from .connection import Connection, disable_nagle
from .listen import bind_listeners, check_loopback

log = logging.getLogger(__name__)

# Receive window and largest packet we ask the server to send us per channel.
# Measured in BENCHMARK.md: paramiko's own defaults (2 MiB, 32 KiB) are the best
# of what we tried; OpenSSH's sshd sends at most 32 KiB per packet anyway.
WINDOW_SIZE = 2 * 1024 * 1024
MAX_PACKET_SIZE = 32 * 1024
# Largest read from the local socket (cut into 32 KiB packets). Above 128 KiB every
# recv() maps and unmaps a fresh buffer: 256 KiB cost ~20 us per read, 64 KiB ~2 us.
SOCKET_READ_SIZE = 64 * 1024
# Larger than the window, so one read drains the channel's buffer completely.
CHANNEL_READ_SIZE = 2 * WINDOW_SIZE
# Keep received data as chunks instead of paramiko's byte array (fewer copies).
CHUNK_BUFFER = True
# How long the remote side may take to accept or refuse a new channel.
OPEN_TIMEOUT = 30.0
# Upper bound on the time close() waits for the threads to finish.
CLOSE_TIMEOUT = 5.0
# Pause after an accept() error such as EMFILE, which would otherwise repeat at once.
ACCEPT_ERROR_PAUSE = 0.1
# Connections accepted per wake-up of the accept loop before it looks at close() again.
ACCEPT_BATCH = 64
# Addresses a listener binds when bind_hosts is not given.
DEFAULT_BIND_HOSTS = ("127.0.0.1", "::1")


class Forwarder(Resource):
    """Local listener(s) on loopback; one direct-tcpip channel per accepted connection.

    Connections to ``bind_hosts``:``port`` on this machine are forwarded through
    ``transport`` to ``remote_host``:``remote_port`` as seen from the SSH server.
    It is a context manager: entering starts it, leaving closes it and waits for
    its threads.

    Attributes:
        port: the local port (the one bound, if 0 was asked for).
        bound: the (host, port) pairs actually listening.
        active_connections: connections currently being served.
        total_connections: connections accepted since start.
        failed_connections: connections whose channel could not be opened
            (the remote refused it, or the transport is gone).
    """

    def __init__(
        self,
        transport: paramiko.Transport,
        port: int,
        remote_host: str = "127.0.0.1",
        remote_port: int | None = None,
        *,
        bind_hosts: tuple[str, ...] = DEFAULT_BIND_HOSTS,
    ) -> None:
        """Prepare a forwarder; nothing is bound until `start`.

        Args:
            transport: an authenticated paramiko transport to open channels on.
            port: local port to listen on; 0 picks a free one (see ``port`` after start).
            remote_host: host the SSH server connects to for each channel.
            remote_port: port the SSH server connects to; defaults to ``port``
                (Colab's extension needs the same port on both ends).
            bind_hosts: loopback addresses to listen on. IPv4 ones are mandatory;
                ``::1`` is skipped when this machine has no IPv6 loopback.

        Raises:
            ValueError: a bind host is not a loopback IP address, a port is out of
                range, or ``port`` is 0 without a ``remote_port``.
        """
        bind_hosts = tuple(dict.fromkeys(bind_hosts))  # each address once, order kept
        check_loopback(bind_hosts)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        if remote_port is None:
            if port == 0:
                raise ValueError("remote_port is required when port is 0")
            remote_port = port
        if not 0 < remote_port <= 65535:
            raise ValueError(f"remote port {remote_port} is out of range")
        self.port = port
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.bind_hosts = bind_hosts
        self.bound: list[tuple[str, int]] = []
        self.total_connections = 0
        self.failed_connections = 0
        self._transport = transport
        self._lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._listeners: list[socket.socket] = []
        self._connections: set[Connection] = set()
        self._accept_thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._started = False
        self._closing = False

    # -- public API ------------------------------------------------------------------------

    @property
    def active_connections(self) -> int:
        """Number of connections accepted and not yet finished."""
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        """Bind every bind host and start accepting connections.

        Raises:
            PortInUseError: the port is taken on 127.0.0.1 (or on ::1 where it exists).
            RuntimeError: the forwarder was already started or closed.
            OSError: binding failed for another reason.
        """
        with self._lock:
            if self._started or self._closing:
                raise RuntimeError("a Forwarder can only be started once")
            self._started = True
            disable_nagle(self._transport)
            try:
                port, listeners = bind_listeners(self.bind_hosts, self.port)
                self._listeners.extend(listener for _, listener in listeners)
                self.bound.extend((host, port) for host, _ in listeners)
                self.port = port
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                thread = threading.Thread(
                    target=self._accept_loop,
                    name=f"forwarder-accept-{self.port}",
                    daemon=True,
                )
                thread.start()
                self._accept_thread = thread
            except BaseException:
                self._close_listeners()
                self._close_wakeup()
                self.bound.clear()
                self._started = False
                raise
        log.debug("forwarding %s to %s:%d", self.bound, self.remote_host, self.remote_port)

    def set_transport(self, transport: paramiko.Transport) -> None:
        """Use ``transport`` for connections accepted from now on (e.g. after a reconnect).

        The listeners stay bound; connections already open keep their old channel.
        """
        disable_nagle(transport)
        with self._lock:
            self._transport = transport

    def close(self) -> None:
        """Stop listening, end every connection and wait (bounded) for all threads.

        Idempotent, and safe to call from a signal handler or while the transport
        is dead or hung: channels are closed by a helper thread, and the wait for
        threads is bounded by a few seconds.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            accept_thread = self._accept_thread
            connections = list(self._connections)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        self._wake_accept_loop()
        current = threading.current_thread()
        if accept_thread is not None and accept_thread is not current:
            accept_thread.join(max(0.0, deadline - time.monotonic()))
        # The accept loop closes them in `finally`; this covers a loop that never ran.
        self._close_listeners()
        self._close_wakeup()
        for conn in connections:
            conn.abort_socket()
        if connections:
            # Closing a channel sends a message; on a hung transport that can block,
            # so it happens off this thread and is only waited for until the deadline.
            def close_channels() -> None:
                for conn in connections:
                    conn.close_channel()

            closer = threading.Thread(
                target=close_channels,
                name=f"forwarder-closer-{self.port}",
                daemon=True,
            )
            closer.start()
            closer.join(max(0.0, deadline - time.monotonic()))
        for conn in connections:
            for thread in conn.threads:
                if thread is not current:
                    thread.join(max(0.0, deadline - time.monotonic()))
        still_running = sum(t.is_alive() for c in connections for t in c.threads)
        if still_running:
            log.warning("forwarder on port %d: %d threads still running", self.port, still_running)

    # -- listening ----------------------------------------------------------------------------

    def _close_listeners(self) -> None:
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            with contextlib.suppress(OSError):
                listener.close()

    def _wake_accept_loop(self) -> None:
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"x")

    def _close_wakeup(self) -> None:
        with self._lock:
            socks, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for sock in socks:
            if sock is not None:
                sock.close()

    def _accept_loop(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            with self._lock:
                listeners = list(self._listeners)
                wake = self._wake_r
            if wake is None:
                return
            selector.register(wake, selectors.EVENT_READ)
            for listener in listeners:
                listener.setblocking(False)
                selector.register(listener, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in selector.select():
                    if key.fileobj is wake or self._closing:
                        return
                    try:
                        self._accept_ready(key.fileobj)  # type: ignore[arg-type]
                    except Exception:
                        # One bad connection must not end the listener; pause in case it repeats.
                        log.exception("forwarder on port %d: accepting failed", self.port)
                        time.sleep(ACCEPT_ERROR_PAUSE)
        except Exception:
            log.exception("forwarder on port %d: accept loop failed", self.port)
        finally:
            selector.close()
            self._close_listeners()

    def _accept_ready(self, listener: socket.socket) -> None:
        """Accept the connections waiting on a readable listener (a bounded batch)."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: the listener stays readable, so pause, don't spin.
                log.warning("forwarder on port %d: accept failed: %s", self.port, exc)
                time.sleep(ACCEPT_ERROR_PAUSE)
                return
            self._start_connection(sock, peer)
            if self._closing:
                return

    def _start_connection(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            # Requests and responses are small and interactive: send them at once.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock, (str(peer[0]), int(peer[1])))
        thread = threading.Thread(
            target=self._serve,
            args=(conn,),
            name=f"forwarder-{self.port}-up-{peer[1]}",
            daemon=True,
        )
        conn.threads.append(thread)
        with self._lock:
            if self._closing:
                sock.close()
                return
            self._connections.add(conn)
            self.total_connections += 1
        try:
            thread.start()
        except RuntimeError:  # cannot start a new thread
            log.warning("forwarder on port %d: no thread for a new connection", self.port)
            self._finish(conn, failed=True)

    # -- one connection ---------------------------------------------------------------------

    def _serve(self, conn: Connection) -> None:
        """Open the channel, then pump local -> remote here and remote -> local in a helper."""
        failed = False
        try:
            channel = self._open_channel(conn)
            if channel is None:
                failed = True
                return
            conn.pump(
                channel,
                socket_read_size=SOCKET_READ_SIZE,
                channel_read_size=CHANNEL_READ_SIZE,
                down_thread_name=f"forwarder-{self.port}-down-{conn.peer[1]}",
            )
        except Exception:
            log.exception("forwarder on port %d: connection from %s failed", self.port, conn.peer)
        finally:
            self._finish(conn, failed=failed)

    def _open_channel(self, conn: Connection) -> paramiko.Channel | None:
        transport = self._transport
        try:
            channel = transport.open_channel(
                "direct-tcpip",
                (self.remote_host, self.remote_port),
                conn.peer,
                window_size=WINDOW_SIZE,
                max_packet_size=MAX_PACKET_SIZE,
                timeout=OPEN_TIMEOUT,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.info(
                "forwarder on port %d: remote %s:%d refused a channel: %s",
                self.port,
                self.remote_host,
                self.remote_port,
                exc,
            )
            return None
        if CHUNK_BUFFER:
            use_chunk_buffer(channel)
        with conn.lock:
            conn.channel = channel
            closed = self._closing
        if closed:
            channel.close()
            return None
        return channel

    def _finish(self, conn: Connection, *, failed: bool) -> None:
        if not conn.finish():
            return
        with self._lock:
            self._connections.discard(conn)
            if failed:
                self.failed_connections += 1
