"""Forwarder against a real OpenSSH sshd on 127.0.0.1 and real target servers; no mocks.

The forwarder's local port differs from the target's port here (one machine, one
network namespace); the same-port rule is exercised by the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
from support.net import has_ipv6_loopback
from support.tunnel import (
    TIMEOUT,
    TargetServer,
    connect,
    echo,
    forwarder_threads,
    open_transport,
    recv_all,
    recv_exactly,
    target,
    wait_for,
)

from remote_runtime.errors import PortInUseError
from remote_runtime.forward import Forwarder
from remote_runtime.forward import forwarder as forwarder_module
from sandbox.sshd import Sshd

IPV6 = has_ipv6_loopback()


def digest_sink(conn: socket.socket) -> None:
    """Read until the client's EOF, then answer with the SHA-256 of everything read."""
    digest = hashlib.sha256()
    while data := conn.recv(1 << 16):
        digest.update(data)
    conn.sendall(digest.hexdigest().encode())


PAYLOAD = os.urandom(16 * 1024 * 1024)


def download(conn: socket.socket) -> None:
    conn.sendall(PAYLOAD)


def make_forwarder(transport: paramiko.Transport, remote_port: int, port: int = 0) -> Forwarder:
    return Forwarder(transport, port, remote_port=remote_port)


# -- data both ways ----------------------------------------------------------------------------


def test_echo_round_trip_of_several_megabytes(
    any_transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    transport = any_transport
    payload = os.urandom(8 * 1024 * 1024)
    with make_forwarder(transport, echo_server.port) as fwd, connect(fwd.port) as sock:
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(recv_all(sock, len(payload))))
        reader.start()
        sock.sendall(payload)
        reader.join(TIMEOUT)
        assert not reader.is_alive()
        assert hashlib.sha256(received[0]).digest() == hashlib.sha256(payload).digest()
        # A small exchange after the bulk one still works on the same connection.
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"


def test_download_until_the_remote_closes(any_transport: paramiko.Transport) -> None:
    transport = any_transport
    with target(download) as server, make_forwarder(transport, server.port) as fwd:
        with connect(fwd.port) as sock:
            data = recv_all(sock)
        assert len(data) == len(PAYLOAD)
        assert hashlib.sha256(data).digest() == hashlib.sha256(PAYLOAD).digest()


def test_upload_then_half_close_reaches_the_remote(any_transport: paramiko.Transport) -> None:
    transport = any_transport
    payload = os.urandom(4 * 1024 * 1024)
    with target(digest_sink) as server, make_forwarder(transport, server.port) as fwd:
        with connect(fwd.port) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # the remote only answers after our EOF
            answer = recv_all(sock)
        assert answer.decode() == hashlib.sha256(payload).hexdigest()


def test_new_connections_are_not_delayed_by_nagle(
    transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    # Without TCP_NODELAY on the SSH socket every new connection waited ~40 ms.
    with make_forwarder(transport, echo_server.port) as fwd:
        samples = []
        for _ in range(20):
            start = time.perf_counter()
            with connect(fwd.port) as sock:
                sock.sendall(b"x" * 64)
                recv_exactly(sock, 64)
            samples.append(time.perf_counter() - start)
    assert statistics.median(samples) < 0.030


# -- many at once ------------------------------------------------------------------------------


def test_three_hundred_concurrent_connections_are_all_served(
    any_transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    transport = any_transport
    count = 300
    results: list[bool] = [False] * count
    opened = threading.Barrier(count + 1, timeout=TIMEOUT)
    release = threading.Event()

    def client(i: int) -> None:
        try:
            with connect(fwd.port) as sock:
                message = f"connection {i:04d}".encode()
                with contextlib.suppress(threading.BrokenBarrierError):
                    opened.wait()
                sock.sendall(message)
                results[i] = recv_exactly(sock, len(message)) == message
                release.wait(TIMEOUT)  # hold every connection open until all have answered
        except OSError:
            results[i] = False

    with make_forwarder(transport, echo_server.port) as fwd:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        opened.wait()
        assert wait_for(lambda: all(results), timeout=TIMEOUT)
        peak = fwd.active_connections
        release.set()
        for thread in threads:
            thread.join(TIMEOUT)
        assert all(results)
        assert peak == count
        assert fwd.total_connections == count
        assert fwd.failed_connections == 0
        assert wait_for(lambda: fwd.active_connections == 0)


# -- binding -----------------------------------------------------------------------------------


def test_port_taken_on_ipv4_loopback_raises_port_in_use(
    transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        fwd = make_forwarder(transport, echo_server.port, port)
        with pytest.raises(PortInUseError, match=rf"port {port} is already in use.*127\.0\.0\.1"):
            fwd.start()
        assert fwd.bound == []
        assert forwarder_threads() == []


@pytest.mark.skipif(not IPV6, reason="this machine has no IPv6 loopback")
def test_port_taken_on_ipv6_loopback_raises_and_releases_ipv4(
    transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    with socket.socket(socket.AF_INET6) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fwd = make_forwarder(transport, echo_server.port, port)
        with pytest.raises(PortInUseError, match=r"\(::1\)"):
            fwd.start()
        assert fwd.bound == []
    # The IPv4 listener it had already opened was closed again.
    with socket.create_server(("127.0.0.1", port)):
        pass


def non_loopback_addresses() -> list[str]:
    """This machine's own addresses that are not loopback (maybe none in a sandbox)."""
    found: set[str] = set()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[2] in ("inet", "inet6"):
                found.add(fields[3].split("/")[0])
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    usable = []
    for text in found:
        address = ipaddress.ip_address(text.split("%")[0])
        if not address.is_loopback and not address.is_link_local:
            usable.append(str(address))
    return sorted(usable)


def test_listens_on_loopback_only(transport: paramiko.Transport, echo_server: TargetServer) -> None:
    with make_forwarder(transport, echo_server.port) as fwd:
        expected = [("127.0.0.1", fwd.port)] + ([("::1", fwd.port)] if IPV6 else [])
        assert fwd.bound == expected
        for host, _ in fwd.bound:
            assert ipaddress.ip_address(host).is_loopback
        for host, port in fwd.bound:
            with connect(port, host) as sock:
                sock.sendall(b"hello")
                assert recv_exactly(sock, 5) == b"hello"
        for address in non_loopback_addresses():
            with pytest.raises(OSError):
                socket.create_connection((address, fwd.port), timeout=2).close()


@pytest.mark.parametrize(
    "hosts", [("0.0.0.0",), ("::",), ("127.0.0.1", "192.168.1.10"), ("localhost",), ()]
)
def test_refuses_non_loopback_bind_hosts(
    transport: paramiko.Transport, hosts: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):
        Forwarder(transport, 0, remote_port=80, bind_hosts=hosts)


def test_port_zero_binds_one_port_on_every_host(
    transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    with make_forwarder(transport, echo_server.port) as fwd:
        assert fwd.port != 0
        assert {port for _, port in fwd.bound} == {fwd.port}


def test_remote_port_defaults_to_the_local_port(transport: paramiko.Transport) -> None:
    fwd = Forwarder(transport, 8888)
    assert (fwd.port, fwd.remote_host, fwd.remote_port) == (8888, "127.0.0.1", 8888)


# -- failures ----------------------------------------------------------------------------------


def test_remote_refusal_closes_the_client_and_the_listener_keeps_working(
    transport: paramiko.Transport,
) -> None:
    # Bound but not listening: the remote side's connect is refused, and nobody else
    # can take the port before we start listening on it.
    server = TargetServer(echo, listen=False)
    try:
        with make_forwarder(transport, server.port) as fwd:
            for attempt in (1, 2):
                with connect(fwd.port) as sock:
                    start = time.monotonic()
                    with contextlib.suppress(ConnectionResetError):
                        assert sock.recv(1) == b""
                    assert time.monotonic() - start < 5
                assert wait_for(lambda: fwd.failed_connections == attempt)  # noqa: B023
            assert wait_for(lambda: fwd.active_connections == 0)
            server.listen()
            with connect(fwd.port) as sock:
                sock.sendall(b"back")
                assert recv_exactly(sock, 4) == b"back"
            assert fwd.failed_connections == 2
            assert fwd.total_connections == 3
    finally:
        server.close()


def test_set_transport_after_the_first_one_died(sshd: Sshd, echo_server: TargetServer) -> None:
    first = open_transport(sshd)
    second: paramiko.Transport | None = None
    try:
        with make_forwarder(first, echo_server.port) as fwd:
            bound = list(fwd.bound)
            with connect(fwd.port) as sock:
                sock.sendall(b"one")
                assert recv_exactly(sock, 3) == b"one"
            first.close()
            with connect(fwd.port) as sock, contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
            assert wait_for(lambda: fwd.failed_connections == 1)
            second = open_transport(sshd)
            fwd.set_transport(second)
            assert fwd.bound == bound
            with connect(fwd.port) as sock:
                sock.sendall(b"two")
                assert recv_exactly(sock, 3) == b"two"
    finally:
        first.close()
        if second is not None:
            second.close()


# -- shutdown ----------------------------------------------------------------------------------


def test_close_joins_threads_and_frees_the_port(
    transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    baseline = threading.active_count()
    fwd = make_forwarder(transport, echo_server.port)
    fwd.start()
    port = fwd.port
    idle = connect(port)
    busy = connect(port)
    try:
        busy.sendall(b"x" * 100_000)  # an exchange in flight; nobody reads the echo
        assert wait_for(lambda: fwd.active_connections == 2)
        assert forwarder_threads()
        start = time.monotonic()
        fwd.close()
        assert time.monotonic() - start < forwarder_module.CLOSE_TIMEOUT
        assert forwarder_threads() == []
        fwd.close()  # idempotent
        # The clients see their connections end.
        idle.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert idle.recv(1) == b""
    finally:
        idle.close()
        busy.close()
    # The target's handler threads end once sshd closes its side.
    assert wait_for(lambda: threading.active_count() <= baseline)
    with socket.create_server(("127.0.0.1", port)):
        pass
    if IPV6:
        with socket.create_server(("::1", port), family=socket.AF_INET6):
            pass


def test_close_is_bounded_when_the_transport_hangs(
    tmp_path: Path, echo_server: TargetServer
) -> None:
    # A private sshd, so stopping its session processes affects nobody else.
    with Sshd(tmp_path / "sshd", listen=("127.0.0.1", 0)) as private:
        hung = open_transport(private)
        stopped: list[int] = []
        try:
            with make_forwarder(hung, echo_server.port) as fwd:
                sock = connect(fwd.port)
                sock.sendall(b"ok")
                assert recv_exactly(sock, 2) == b"ok"
                stopped = private.kill_sessions(signal.SIGSTOP)
                assert stopped
                # Upload until the remote's window is used up and our pump blocks on it.
                sock.setblocking(False)
                deadline = time.monotonic() + 10
                with contextlib.suppress(BlockingIOError):
                    while time.monotonic() < deadline:
                        sock.send(b"y" * 65536)
                start = time.monotonic()
                fwd.close()
                assert time.monotonic() - start < forwarder_module.CLOSE_TIMEOUT
                # Closing the channels woke the pump blocked on the window: nothing is left,
                # even though the server still has not answered.
                assert forwarder_threads() == []
                sock.close()
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            hung.close()
    assert wait_for(lambda: forwarder_threads() == [])


def test_close_after_the_transport_is_gone(sshd: Sshd, echo_server: TargetServer) -> None:
    dead = open_transport(sshd)
    fwd = make_forwarder(dead, echo_server.port)
    fwd.start()
    with connect(fwd.port) as sock:
        sock.sendall(b"hi")
        assert recv_exactly(sock, 2) == b"hi"
        dead.close()
        start = time.monotonic()
        fwd.close()
        assert time.monotonic() - start < 2
    assert forwarder_threads() == []


def test_close_from_a_signal_handler_while_main_thread_waits_on_it(
    transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    fwd = make_forwarder(transport, echo_server.port)
    fwd.start()
    closed = []

    def handler(signum: int, frame: object) -> None:
        fwd.close()
        closed.append(signum)

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with connect(fwd.port) as sock:
            sock.sendall(b"hi")
            assert recv_exactly(sock, 2) == b"hi"
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            # The handler runs in this thread while it is blocked in recv on the forwarder.
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert closed == [signal.SIGALRM]
    assert forwarder_threads() == []


def test_start_twice_and_close_before_start(
    transport: paramiko.Transport, echo_server: TargetServer
) -> None:
    never_started = make_forwarder(transport, echo_server.port)
    never_started.close()
    with make_forwarder(transport, echo_server.port) as fwd, pytest.raises(RuntimeError):
        fwd.start()
