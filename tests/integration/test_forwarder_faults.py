"""What clients and servers do wrong must never end the SSH session or another connection.

Every test runs the forwarder against a real OpenSSH sshd and real target servers,
with one "bystander" connection open throughout: afterwards the session is alive,
sshd never dropped it (its log), the bystander still echoes, a new connection works,
and the forwarder holds no channel, socket or thread for the connections that ended.
OpenSSH's `ssh -L` survives each of these; before the forwarder sent a channel's
messages from one thread, ten uploads to a target that answers early ended the
session ten times in ten (DESIGN.md fact 13). Sessions lost per 1,000 such
connections and a 10-minute soak are in scripts/bench.py (`--faults`, `--soak`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
from paramiko.common import MSG_CHANNEL_CLOSE
from support.net import PortRange
from support.tunnel import (
    TIMEOUT,
    TargetServer,
    connect,
    forwarder_threads,
    log_size,
    open_fds,
    open_transport,
    recv_all,
    recv_exactly,
    reset,
    session_dropped,
    target,
    wait_for,
)

from remote_runtime.forward import Forwarder
from sandbox.sshd import Sshd

PORTS = PortRange(22000, 22999)
BURST = 10
CHUNK = b"u" * 65536


def burst(count: int, client: Callable[[int], None]) -> None:
    """Run `client(i)` for i in range(count), all at once; every one must return."""
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a client hung"


# -- target servers that misbehave -----------------------------------------------------------


def answer_early(conn: socket.socket) -> None:
    """An HTTP server refusing an upload: answer after the first bytes, close unread."""
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n")


def stream(conn: socket.socket) -> None:
    """Send until the client goes away (the client decides when it has had enough)."""
    while True:
        conn.sendall(CHUNK)


def reset_after_request(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"partial answer")
    reset(conn)


def digest_sink(conn: socket.socket) -> None:
    """Read until the client's EOF, then answer with the SHA-256 of everything read."""
    digest = hashlib.sha256()
    while data := conn.recv(1 << 16):
        digest.update(data)
    conn.sendall(digest.hexdigest().encode())


class HalfCloser:
    """Says hello, closes its sending half, then counts what the client still sends."""

    def __init__(self) -> None:
        self.received: dict[str, int] = {}

    def __call__(self, conn: socket.socket) -> None:
        name = recv_exactly(conn, 8).decode()
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        self.received[name] = len(recv_all(conn))


# -- the checks around every fault ----------------------------------------------------------


@dataclass
class Tunnel:
    sshd: Sshd
    transport: paramiko.Transport
    forwarder: Forwarder
    bystander: socket.socket

    def port_to(self, server: TargetServer) -> Forwarder:
        """A second forwarder on the same transport, to `server` (closed by the fixture)."""
        fwd = Forwarder(self.transport, PORTS.take(), remote_port=server.port,
                        bind_hosts=("127.0.0.1",))
        fwd.start()
        return fwd


@pytest.fixture
def tunnel(
    sshd: Sshd, transport: paramiko.Transport, echo_server: TargetServer
) -> Iterator[Tunnel]:
    """A forwarder to an echo server with one bystander connection open; after the
    test, the session must have survived and nothing may be left behind."""
    offset = log_size(sshd)
    fds = open_fds()
    with Forwarder(transport, PORTS.take(), remote_port=echo_server.port,
                   bind_hosts=("127.0.0.1",)) as fwd:
        bystander = connect(fwd.port)
        bystander.sendall(b"before")
        assert recv_exactly(bystander, 6) == b"before"
        yield Tunnel(sshd, transport, fwd, bystander)
        assert transport.is_active(), "the SSH session ended"
        bystander.sendall(b"after")
        assert recv_exactly(bystander, 5) == b"after", "the bystander connection broke"
        with connect(fwd.port) as fresh:
            fresh.sendall(b"fresh")
            assert recv_exactly(fresh, 5) == b"fresh"
        # Everything that ended is released: only the bystander's channel is left.
        assert wait_for(lambda: fwd.active_connections == 1), fwd.active_connections
        assert wait_for(lambda: len(transport._channels.values()) == 1)  # type: ignore[attr-defined]
        assert len(transport.channels_seen) <= 2  # type: ignore[attr-defined]
        bystander.close()
    assert session_dropped(sshd, offset) == []
    assert forwarder_threads() == []
    assert wait_for(lambda: open_fds() <= fds)


# -- the faults --------------------------------------------------------------------------------


def test_uploads_to_a_target_that_answers_early_and_closes(tunnel: Tunnel) -> None:
    answered = []
    with target(answer_early) as server:
        fwd = tunnel.port_to(server)
        try:
            def upload(i: int) -> None:
                with contextlib.suppress(OSError), connect(fwd.port) as sock:
                    for _ in range(128):  # 8 MiB, far more than the target reads
                        sock.sendall(CHUNK)
                    answered.append(recv_all(sock))

            for _ in range(10):
                burst(BURST, upload)
                assert tunnel.transport.is_active()
        finally:
            fwd.close()
    assert wait_for(lambda: tunnel.transport.is_active() and not forwarder_threads()[1:])


def test_clients_that_reset_in_the_middle_of_a_transfer(tunnel: Tunnel) -> None:
    with target(stream) as streamer, target(digest_sink) as sink:
        downloads, uploads = tunnel.port_to(streamer), tunnel.port_to(sink)
        try:
            def client(i: int) -> None:
                with contextlib.suppress(OSError):
                    sock = connect(downloads.port if i % 2 else uploads.port)
                    if i % 2:
                        recv_exactly(sock, random.randint(1, 1 << 20))
                    else:
                        for _ in range(random.randint(1, 32)):
                            sock.sendall(CHUNK)
                    reset(sock)

            for _ in range(5):
                burst(BURST, client)
        finally:
            downloads.close()
            uploads.close()


def test_targets_that_reset(tunnel: Tunnel) -> None:
    with target(reset_after_request) as server:
        fwd = tunnel.port_to(server)
        try:
            def client(i: int) -> None:
                with contextlib.suppress(OSError), connect(fwd.port) as sock:
                    sock.sendall(b"request")
                    for _ in range(16):
                        sock.sendall(CHUNK)
                    recv_all(sock)

            for _ in range(5):
                burst(BURST, client)
        finally:
            fwd.close()


def test_half_close_from_the_client(tunnel: Tunnel) -> None:
    answers: list[bool] = []
    with target(digest_sink) as server:
        fwd = tunnel.port_to(server)
        try:
            def client(i: int) -> None:
                payload = os.urandom(random.randint(1, 2 << 20))
                with connect(fwd.port) as sock:
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)  # the target answers only after our EOF
                    answers.append(recv_all(sock).decode() == hashlib.sha256(payload).hexdigest())

            burst(BURST, client)
        finally:
            fwd.close()
    assert answers == [True] * BURST


def test_half_close_from_the_target(tunnel: Tunnel) -> None:
    half = HalfCloser()
    sent: dict[str, int] = {}
    with target(half) as server:
        fwd = tunnel.port_to(server)
        try:
            def client(i: int) -> None:
                name = f"client{i:02d}"
                with connect(fwd.port) as sock:
                    sock.sendall(name.encode())
                    assert recv_all(sock) == b"hello"  # then EOF: the target's half is closed
                    payload = os.urandom(random.randint(1, 1 << 20))
                    sock.sendall(payload)  # our half still carries data
                    sent[name] = len(payload)
                    sock.shutdown(socket.SHUT_WR)
                    assert recv_all(sock) == b""  # and the connection ends

            burst(BURST, client)
            assert wait_for(lambda: len(half.received) == BURST)
        finally:
            fwd.close()
    assert half.received == sent


def test_a_client_that_stops_reading_stalls_only_itself(tunnel: Tunnel) -> None:
    with target(stream) as server:
        fwd = tunnel.port_to(server)
        try:
            stalled = [connect(fwd.port) for _ in range(3)]  # they never read
            time.sleep(0.5)  # their channels fill up to the window
            start = time.monotonic()
            for i in range(50):
                message = f"still here {i}".encode()
                tunnel.bystander.sendall(message)
                assert recv_exactly(tunnel.bystander, len(message)) == message
            with connect(tunnel.forwarder.port) as other:
                other.sendall(b"x" * 1000)
                assert recv_exactly(other, 1000) == b"x" * 1000
            assert time.monotonic() - start < 5
            for sock in stalled:
                sock.close()
            assert wait_for(lambda: fwd.active_connections == 0)
        finally:
            fwd.close()


def test_abandoned_connections(tunnel: Tunnel) -> None:
    with target(stream) as server:
        fwd = tunnel.port_to(server)
        try:
            def client(i: int) -> None:
                with contextlib.suppress(OSError):
                    sock = connect(fwd.port)
                    if i % 3 == 1:
                        sock.sendall(b"GET / HTTP/1.1\r\nHost: loc")  # half a request
                    elif i % 3 == 2:
                        sock.recv(1000)  # a little of the answer
                    sock.close()

            for _ in range(10):
                burst(20, client)
            idle = [connect(fwd.port) for _ in range(20)]  # left open, never used
            assert wait_for(lambda: fwd.active_connections == 20)
        finally:
            fwd.close()  # with the idle ones still open
        for sock in idle:
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(1 << 16):
                    pass
            sock.close()


def test_connections_abandoned_before_the_server_refuses_them(tunnel: Tunnel) -> None:
    # Nothing listens on the remote port, so sshd refuses every channel; the forwarder
    # is closed while the refusals are on their way, which abandons those channels.
    # paramiko hands a refusal over holding the transport's lock, and forgetting the
    # channel there used to take it again: the transport thread deadlocked.
    nowhere = PORTS.take()
    for _ in range(20):
        with Forwarder(tunnel.transport, PORTS.take(), remote_port=nowhere,
                       bind_hosts=("127.0.0.1",)) as fwd:
            clients = [connect(fwd.port) for _ in range(30)]
            deadline = time.monotonic() + TIMEOUT
            while fwd.total_connections < 30 and time.monotonic() < deadline:
                time.sleep(0.0005)  # closed as soon as the last one is accepted
        for sock in clients:
            sock.close()
    # Every refusal has been handled: the transport thread still answers.
    tunnel.bystander.sendall(b"alive")
    assert recv_exactly(tunnel.bystander, 5) == b"alive"


def test_thousands_of_short_connections(tunnel: Tunnel) -> None:
    count, workers = 2000, 20
    done = []

    def client(worker: int) -> None:
        for i in range(count // workers):
            with connect(tunnel.forwarder.port) as sock:
                message = f"{worker}:{i}".encode()
                sock.sendall(message)
                if recv_exactly(sock, len(message)) == message:
                    done.append(1)

    burst(workers, client)
    assert len(done) == count
    assert tunnel.forwarder.total_connections == count + 1
    assert tunnel.forwarder.failed_connections == 0


def test_closing_a_listener_with_connections_open_keeps_the_session(tunnel: Tunnel) -> None:
    with target(stream) as streamer, target(digest_sink) as sink:
        downloads, uploads = tunnel.port_to(streamer), tunnel.port_to(sink)
        busy = [connect(downloads.port) for _ in range(5)] + [connect(uploads.port)
                                                                for _ in range(5)]
        stop = threading.Event()

        def keep_busy(sock: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    if sock.getpeername()[1] == downloads.port:
                        sock.recv(1 << 16)
                    else:
                        sock.sendall(CHUNK)

        threads = [threading.Thread(target=keep_busy, args=(s,), daemon=True) for s in busy]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        downloads.close()  # both mid-transfer in every connection
        uploads.close()
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
        for sock in busy:
            sock.close()
        assert tunnel.transport.is_active()
        again = tunnel.port_to(streamer)  # the same transport serves a new listener
        try:
            with connect(again.port) as sock:
                assert len(recv_exactly(sock, 100_000)) == 100_000
        finally:
            again.close()


def test_every_fault_at_once(tunnel: Tunnel) -> None:
    half = HalfCloser()
    with (target(answer_early) as early, target(stream) as streamer,
          target(reset_after_request) as resetter, target(half) as halfway):
        forwarders = [tunnel.port_to(s) for s in (early, streamer, resetter, halfway)]
        ports = [f.port for f in forwarders]

        def client(i: int) -> None:
            kind = i % 6
            with contextlib.suppress(OSError):
                sock = connect(ports[min(kind, 3)] if kind < 4 else ports[1])
                if kind == 0:
                    for _ in range(64):
                        sock.sendall(CHUNK)
                elif kind == 1:
                    recv_exactly(sock, random.randint(1, 1 << 19))
                    reset(sock)
                elif kind == 2:
                    sock.sendall(b"request")
                    recv_all(sock)
                elif kind == 3:
                    sock.sendall(f"mixed{i:03d}".encode())
                    recv_all(sock)
                    sock.sendall(b"more")
                    sock.shutdown(socket.SHUT_WR)
                    recv_all(sock)
                elif kind == 4:
                    pass  # connect and leave
                else:
                    sock.recv(10)  # read a little, then stop reading and leave
                sock.close()

        try:
            for _ in range(5):
                burst(30, client)
        finally:
            for fwd in forwarders:
                fwd.close()


def test_a_rekey_while_channels_close_does_not_stall_the_session(tunnel: Tunnel) -> None:
    """A CLOSE that arrives right after we started a key exchange: paramiko's transport
    thread used to wait for the exchange it alone could finish (30 s, then the session
    ended). Here the next CLOSE from the server finds our KEXINIT just sent."""
    transport = tunnel.transport
    original = transport._channel_handler_table  # type: ignore[attr-defined]
    handle_close = original[MSG_CHANNEL_CLOSE]
    rekeyed: list[bool] = []

    def close_during_rekey(channel: paramiko.Channel, message: paramiko.Message) -> None:
        if not rekeyed:
            rekeyed.append(True)
            transport._send_kex_init()  # type: ignore[attr-defined]
        handle_close(channel, message)

    # A copy for this transport only (the class's table is shared by every transport).
    transport._channel_handler_table = {  # type: ignore[attr-defined]
        **original, MSG_CHANNEL_CLOSE: close_during_rekey}
    try:
        start = time.monotonic()
        session = transport.open_session(timeout=TIMEOUT)  # a command's channel, as `up` uses
        session.exec_command("true")
        # The server's CLOSE must find the channel open, so we do not close it first.
        assert wait_for(lambda: session.closed, timeout=TIMEOUT)
        with connect(tunnel.forwarder.port) as sock:  # the transport thread still serves
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
        assert rekeyed
        assert time.monotonic() - start < 10
        session.close()
    finally:
        transport._channel_handler_table = original  # type: ignore[attr-defined]


def test_server_keepalives_on_forwarded_channels_are_answered(
    tmp_path: Path, echo_server: TargetServer
) -> None:
    """sshd with ClientAliveInterval asks the first open channel for an answer and drops
    a session that gives none; here the only open channels are forwarded ones."""
    config = "ClientAliveInterval 1\nClientAliveCountMax 1"
    with Sshd(tmp_path / "sshd", listen=("127.0.0.1", 0), extra_config=config) as server:
        transport = open_transport(server)
        try:
            with Forwarder(transport, PORTS.take(), remote_port=echo_server.port,
                           bind_hosts=("127.0.0.1",)) as fwd, connect(fwd.port) as sock:
                sock.sendall(b"one")
                assert recv_exactly(sock, 3) == b"one"
                time.sleep(4.5)  # several keepalives: one unanswered is one too many
                sock.sendall(b"two")
                assert recv_exactly(sock, 3) == b"two"
                assert transport.is_active()
            assert session_dropped(server) == []
        finally:
            transport.close()
