"""Client-side measurements of scripts/bench.py: one tunnel's port driven as a user's
HTTP client would (bulk both ways, request latency new and kept alive, concurrency).
Every loop is bounded in count and time."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

READY_TIMEOUT = 20.0
IO_TIMEOUT = 30.0
PHASE_TIME_CAP = 10.0  # no latency loop runs longer than this
MSG = 64
ECHO_PAYLOAD = bytes(range(MSG))


# -- client measurements -----------------------------------------------------------------------


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed early")
        buf += chunk
    return bytes(buf)


def echo_once(port: int, timeout: float = 5.0) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"ECHO {MSG}\n".encode() + ECHO_PAYLOAD)
        if recv_exactly(sock, MSG) != ECHO_PAYLOAD:
            raise ConnectionError("echo mismatch")


def wait_ready(port: int, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            echo_once(port, timeout=2.0)
            return
        except OSError as exc:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"tunnel exited with status {proc.returncode}") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} did not answer within {READY_TIMEOUT}s") from exc
            time.sleep(0.1)


def bulk_once(port: int, size: int) -> float:
    """MB/s (10**6 bytes per second) for one download of `size` bytes."""
    buf = memoryview(bytearray(4 * 1024 * 1024))
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(f"BULK {size}\n".encode())
        got = 0
        while got < size:
            n = sock.recv_into(buf)
            if n == 0:
                raise ConnectionError(f"bulk stream ended after {got} of {size} bytes")
            got += n
    return size / (time.perf_counter() - start) / 1e6


def upload_once(port: int, size: int) -> float:
    """MB/s for one upload of `size` bytes (timed until the target confirms it read them)."""
    chunk = memoryview(bytes(1024 * 1024))
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(f"SINK {size}\n".encode())
        left = size
        while left:
            step = min(left, len(chunk))
            sock.sendall(chunk[:step])
            left -= step
        if recv_exactly(sock, 2) != b"OK":
            raise ConnectionError("upload not confirmed")
    return size / (time.perf_counter() - start) / 1e6


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process we started (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50, p99


def latency_new_connection(port: int, count: int) -> list[float]:
    """Milliseconds for each connect + 64-byte echo + close."""
    samples: list[float] = []
    header = f"ECHO {MSG}\n".encode()
    cap = time.monotonic() + PHASE_TIME_CAP
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(header + ECHO_PAYLOAD)
            recv_exactly(sock, MSG)
        samples.append((time.perf_counter() - start) * 1000)
        if time.monotonic() > cap:
            break
    return samples


def latency_kept_alive(port: int, count: int) -> list[float]:
    """Milliseconds for each 64-byte echo on one kept-alive connection."""
    samples: list[float] = []
    cap = time.monotonic() + PHASE_TIME_CAP
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"ECHO {MSG}\n".encode())
        for _ in range(min(50, count)):  # warm up
            sock.sendall(ECHO_PAYLOAD)
            recv_exactly(sock, MSG)
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(ECHO_PAYLOAD)
            recv_exactly(sock, MSG)
            samples.append((time.perf_counter() - start) * 1000)
            if time.monotonic() > cap:
                break
    return samples


def concurrent(port: int, count: int, timeout: float) -> int:
    """Open `count` connections at once, then echo on each; return how many were answered.

    All connections stay open until every one has finished (or the deadline passed),
    so the tunnel really holds `count` connections at the same time.
    """
    connected = threading.Semaphore(0)
    finished = threading.Semaphore(0)
    go = threading.Event()
    release = threading.Event()
    ok = [False] * count
    deadline = time.monotonic() + 3 * timeout

    def client(i: int) -> None:
        sock = None
        try:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            finally:
                connected.release()
            go.wait(timeout)
            sock.sendall(f"ECHO {MSG}\n".encode() + ECHO_PAYLOAD)
            ok[i] = recv_exactly(sock, MSG) == ECHO_PAYLOAD
        except OSError:
            pass
        finally:
            finished.release()
            if sock is not None:
                release.wait(max(0.0, deadline - time.monotonic()))
                sock.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for _ in range(count):
        if not connected.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    go.set()
    for _ in range(count):
        if not finished.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    answered = sum(ok)
    release.set()
    for thread in threads:
        thread.join(max(0.0, deadline + 5 - time.monotonic()))
    return answered
