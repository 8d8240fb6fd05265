"""Local port forwarding over one paramiko transport: our own `ssh -L`.

A `Forwarder` listens on loopback only (127.0.0.1, and ::1 when the machine has
it) and opens one ``direct-tcpip`` channel per accepted connection.

Like OpenSSH's client, it runs one event loop for every connection: one thread
(`forwarder-PORT`) accepts, reads the clients and sends everything that goes to
the server, with non-blocking sockets; paramiko's transport thread writes what the
server sends straight to the clients (`connection` says who does what, `hooks` how
we hook into paramiko). So a new connection costs no thread, a request and its
answer cross two threads (as in OpenSSH: two wake-ups), and each channel's
messages leave from one thread in order, never after its CLOSE, which is what
keeps OpenSSH's sshd from ending the session (DESIGN.md fact 13).

The tuning constants below are read at use, so scripts/bench_tunnel.py can set them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

import paramiko

from ..lifecycle import Resource
from .connection import Connection, Settings
from .hooks import TransportHooks
from .listen import accept, bind_listeners, check_loopback
from .poller import READ, make_poller

log = logging.getLogger(__name__)

# Receive window and largest packet we ask the server to send us per channel.
# Measured in BENCHMARK.md: paramiko's own defaults (2 MiB, 32 KiB) are the best
# of what we tried; OpenSSH's sshd sends at most 32 KiB per packet anyway.
WINDOW_SIZE = 2 * 1024 * 1024
MAX_PACKET_SIZE = 32 * 1024
# Largest read from a client socket (cut into packets). Above 128 KiB every recv()
# maps and unmaps a fresh buffer: 256 KiB cost ~20 us per read, 64 KiB ~2 us.
SOCKET_READ_SIZE = 64 * 1024
# How long the remote side may take to accept or refuse a new channel.
OPEN_TIMEOUT = 30.0
# Upper bound on the time close() waits for the loop to finish.
CLOSE_TIMEOUT = 5.0
# Pause accepting after an accept() error such as EMFILE, which would repeat at once.
ACCEPT_ERROR_PAUSE = 0.1
# Connections accepted per wake-up before the loop looks at the others again.
ACCEPT_BATCH = 64
# How often the loop looks for channels that were never answered.
TICK = 1.0
# Addresses a listener binds when bind_hosts is not given.
DEFAULT_BIND_HOSTS = ("127.0.0.1", "::1")

_WAKE = "wake"


class Forwarder(Resource):
    """Local listener(s) on loopback; one direct-tcpip channel per accepted connection.

    Connections to ``bind_hosts``:``port`` on this machine are forwarded through
    ``transport`` to ``remote_host``:``remote_port`` as seen from the SSH server.
    It is a context manager: entering starts it, leaving closes it and waits for
    its thread.

    Attributes:
        port: the local port (the one bound, if 0 was asked for).
        bound: the (host, port) pairs actually listening.
        active_connections: connections currently being served.
        total_connections: connections accepted since start.
        failed_connections: connections whose channel could not be opened
            (the remote refused it, did not answer, or the transport is gone).
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
        self._hooks: TransportHooks | None = None
        self._lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._listeners: list[socket.socket] = []
        self._families: dict[socket.socket, int] = {}  # each listener's address family
        self._connections: set[Connection] = set()
        self._selector: Any = None  # a poller (forward.poller)
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._woken: list[Connection] = []
        self._wake_sent = False
        self._loop_done = False
        self._accept_paused_until = 0.0
        self._started = False
        self._closing = False

    # -- public API ------------------------------------------------------------------------

    @property
    def active_connections(self) -> int:
        """Number of connections accepted and not yet finished."""
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        """Bind every bind host and start the loop.

        Raises:
            PortInUseError: the port is taken on 127.0.0.1 (or on ::1 where it exists).
            RuntimeError: the forwarder was already started or closed.
            OSError: binding failed for another reason.
        """
        with self._lock:
            if self._started or self._closing:
                raise RuntimeError("a Forwarder can only be started once")
            self._started = True
            self._use(self._transport)
            selector = make_poller()
            try:
                port, listeners = bind_listeners(self.bind_hosts, self.port)
                self._listeners.extend(listener for _, listener in listeners)
                self.bound.extend((host, port) for host, _ in listeners)
                self.port = port
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                selector.register(self._wake_r.fileno(), READ, _WAKE)
                for listener in self._listeners:
                    listener.setblocking(False)
                    self._families[listener] = int(listener.family)
                    selector.register(listener.fileno(), READ, listener)
                self._selector = selector
                thread = threading.Thread(
                    target=self._run, name=f"forwarder-{self.port}", daemon=True
                )
                thread.start()
                self._thread = thread
            except BaseException:
                selector.close()
                self._selector = None
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
        with self._lock:
            self._use(transport)

    def close(self) -> None:
        """Stop listening, end every connection and wait (bounded) for the loop.

        Idempotent, and safe to call from a signal handler or while the transport
        is dead or hung: the loop does the work and is waited for a few seconds at most.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            thread = self._thread
        if thread is None:
            self._close_listeners()
            self._close_wakeup()
            return
        self._wake_loop()
        if thread is not threading.current_thread():
            thread.join(CLOSE_TIMEOUT)
        if thread.is_alive():
            log.warning("forwarder on port %d: its loop is still running", self.port)
            self._close_listeners()  # free the port anyway

    # -- the loop ----------------------------------------------------------------------------

    def _use(self, transport: paramiko.Transport) -> None:
        self._transport = transport
        self._hooks = TransportHooks.install(transport)
        _disable_nagle(transport)

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        next_tick = time.monotonic() + TICK
        try:
            while not self._closing:
                for item, events in selector.poll(TICK):
                    if item.__class__ is Connection:
                        if events & READ:
                            item.readable()
                        else:
                            item.step()
                        self._update(item)
                    elif item is _WAKE:
                        self._drain_wakeup()
                    else:
                        self._accept_ready(item)
                if self._woken:  # read without the lock: a wake-up missed here comes again
                    with self._lock:
                        woken, self._woken = self._woken, []
                        self._wake_sent = False
                    for conn in woken:
                        conn.step()
                        self._update(conn)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK
                    self._tick(now)
        except Exception:
            log.exception("forwarder on port %d: its loop failed", self.port)
        finally:
            self._shutdown()

    def _tick(self, now: float) -> None:
        """Give up on channels the server never answered; accept again after a pause."""
        for conn in list(self._connections):
            if conn.expired(now):
                log.info("forwarder on port %d: no answer to a channel open in %.0fs",
                         self.port, OPEN_TIMEOUT)
                conn.refused = True
                conn.finish()
                self._update(conn)
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            assert self._selector is not None
            for listener in self._listeners:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.register(listener.fileno(), READ, listener)

    def _shutdown(self) -> None:
        self._close_listeners()
        for conn in list(self._connections):
            conn.finish()
            self._update(conn)
        with self._lock:
            self._loop_done = True
            self._woken.clear()
        self._close_wakeup()
        if self._selector is not None:
            self._selector.close()

    def _update(self, conn: Connection) -> None:
        """Watch what `conn` waits for now; forget it once finished."""
        if conn.done:
            with self._lock:
                if conn in self._connections:
                    self._connections.discard(conn)
                    if conn.refused:
                        self.failed_connections += 1
            return
        mask = conn.interest()
        if mask == conn.mask:
            return
        selector = self._selector
        assert selector is not None
        if conn.mask == 0:
            selector.register(conn.fd, mask, conn)
        elif mask == 0:
            selector.unregister(conn.fd)
        else:
            selector.modify(conn.fd, mask, conn)
        conn.mask = mask

    def _release(self, conn: Connection) -> None:
        """Called by `Connection.finish` (in the loop) before it closes its socket."""
        if conn.mask and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(conn.fd)
        conn.mask = 0

    def _wake(self, conn: Connection) -> None:
        """From any thread: have the loop `step` this connection soon."""
        with self._lock:
            if self._loop_done:
                return
            self._woken.append(conn)
            if self._wake_sent:
                return
            self._wake_sent = True
        self._wake_loop()

    def _wake_loop(self) -> None:
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"x")

    def _drain_wakeup(self) -> None:
        wake = self._wake_r
        with contextlib.suppress(OSError):
            while wake is not None and wake.recv(4096):
                pass

    # -- accepting -----------------------------------------------------------------------------

    def _accept_ready(self, listener: socket.socket) -> None:
        """Accept the connections waiting on a readable listener (a bounded batch)."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = accept(listener, self._families[listener])
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: the listener stays readable, so pause, don't spin.
                log.warning("forwarder on port %d: accept failed: %s", self.port, exc)
                self._pause_accepting()
                return
            self._start_connection(sock, (str(peer[0]), int(peer[1])))
            if self._closing:
                return

    def _pause_accepting(self) -> None:
        assert self._selector is not None
        for listener in self._listeners:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(listener.fileno())
        self._accept_paused_until = time.monotonic() + ACCEPT_ERROR_PAUSE

    def _start_connection(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            # Requests and responses are small and interactive: send them at once.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hooks = self._hooks
        assert hooks is not None
        settings = Settings(window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE,
                            read_size=SOCKET_READ_SIZE, open_timeout=OPEN_TIMEOUT)
        conn = Connection(sock, peer, hooks, settings, self._wake, self._release)
        with self._lock:
            self._connections.add(conn)
            self.total_connections += 1
        try:
            conn.open((self.remote_host, self.remote_port))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.info("forwarder on port %d: cannot open a channel: %s", self.port, exc)
            conn.refused = True
            conn.finish()
        self._update(conn)

    # -- closing -----------------------------------------------------------------------------

    def _close_listeners(self) -> None:
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            with contextlib.suppress(OSError):
                listener.close()

    def _close_wakeup(self) -> None:
        with self._lock:
            socks, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for sock in socks:
            if sock is not None:
                sock.close()


def _disable_nagle(transport: paramiko.Transport) -> None:
    """Send SSH packets at once: with Nagle's algorithm a new connection waits ~40 ms.

    Opening a channel and sending its first data are two small writes in a row;
    Nagle holds the second until the first is acknowledged, which the server
    delays (delayed ACK). OpenSSH sets TCP_NODELAY for the same reason.
    """
    sock = getattr(transport, "sock", None)
    sock = getattr(sock, "_sock", sock)  # under ssh.streams.ReadAheadSocket
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

