"""The fault and soak suite of scripts/bench.py: what ends a tunnel's SSH session, and
whether a tunnel holds 500 connections for minutes with its resources flat.

Faults (`bench.py --faults`): connections that misbehave, in bursts of 10 at once,
each kind in turn: uploads to a target that answers early and closes, clients and
targets that reset mid-transfer, half-closes both ways, clients that stop reading,
connections abandoned before or during a request. A bystander connection stays open
through every burst; when it no longer echoes, or the tunnel process exited, the
session was lost: counted, and the tunnel is started again.

Soak (`bench.py --soak MINUTES`): this file run as a program (`soak-client`) keeps N
connections open at once with churn (each lives 5-30 s, sends a 64-byte echo about
once a second, a tenth of them download 1 MiB per visit instead) and prints a JSON
line a minute. The parent samples the tunnel process's open fds, threads and RSS.

Targets are scripts/bench_server.py's verbs. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

IO_TIMEOUT = 10.0
BURST = 10
CHUNK = b"u" * 65536
MSG = 64
PAYLOAD = bytes(range(MSG))


# -- one faulted connection each ---------------------------------------------------------------


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _drain(sock: socket.socket, limit: int = 1 << 30) -> int:
    got = 0
    while got < limit:
        data = sock.recv(1 << 16)
        if not data:
            break
        got += len(data)
    return got


def upload_to_early_close(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"EARLY\n")
        for _ in range(128):  # 8 MiB; the target reads 4 KiB of it
            sock.sendall(CHUNK)
        _drain(sock)


def client_resets_download(port: int) -> None:
    sock = _connect(port)
    sock.sendall(b"BULK 1073741824\n")
    _drain(sock, random.randint(1, 1 << 20))
    _reset(sock)


def client_resets_upload(port: int) -> None:
    sock = _connect(port)
    sock.sendall(b"SINK 1073741824\n")
    for _ in range(random.randint(1, 32)):
        sock.sendall(CHUNK)
    _reset(sock)


def target_resets(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(f"RESET {random.randint(0, 1 << 20)}\n".encode())
        _drain(sock)


def half_close_from_client(port: int) -> None:
    payload = os.urandom(random.randint(1, 1 << 20))
    with _connect(port) as sock:
        sock.sendall(b"DIGEST\n" + payload)
        sock.shutdown(socket.SHUT_WR)
        answer = _drain(sock, 64)
        if answer != 64:
            raise ConnectionError("no digest after a half-close")


def half_close_from_target(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"HALF\n")
        if _drain(sock) != 5:  # "hello", then the target's EOF
            raise ConnectionError("no hello before the target's EOF")
        sock.sendall(os.urandom(random.randint(1, 1 << 19)))  # our half still carries data
        sock.shutdown(socket.SHUT_WR)
        _drain(sock)


def stops_reading(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"BULK 1073741824\n")
        time.sleep(0.2)  # the channel fills up to its window, then we leave


def abandoned(port: int) -> None:
    sock = _connect(port)
    if random.random() < 0.5:
        sock.sendall(b"ECHO 64\n" + PAYLOAD[:10])  # half a request
    sock.close()


FAULTS: dict[str, Callable[[int], None]] = {
    "early close while uploading": upload_to_early_close,
    "client reset (download)": client_resets_download,
    "client reset (upload)": client_resets_upload,
    "target reset": target_resets,
    "half-close from client": half_close_from_client,
    "half-close from target": half_close_from_target,
    "client stops reading": stops_reading,
    "abandoned": abandoned,
}


@dataclass
class FaultResult:
    connections: int = 0
    sessions_lost: int = 0
    lost_by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def per_thousand(self) -> float:
        return 1000 * self.sessions_lost / self.connections if self.connections else 0.0


class Bystander:
    """One connection left open through the faults; it must keep echoing."""

    def __init__(self, port: int) -> None:
        self.sock = _connect(port)
        self.sock.sendall(f"ECHO {MSG}\n".encode())
        self.ok()

    def ok(self) -> bool:
        try:
            self.sock.sendall(PAYLOAD)
            got = b""
            while len(got) < MSG:
                data = self.sock.recv(MSG - len(got))
                if not data:
                    return False
                got += data
        except OSError:
            return False
        return got == PAYLOAD

    def close(self) -> None:
        self.sock.close()


def run_faults(
    start: Callable[[], tuple[int, Callable[[], bool]]],
    count: int,
    note: Callable[[str], None],
) -> FaultResult:
    """`count` faulted connections (all kinds in turn, in bursts of 10) through a tunnel.

    `start()` starts the tunnel and returns its port and a liveness check of its
    process; it is called again after every lost session.
    """
    result = FaultResult()
    kinds = list(FAULTS.items())
    began = time.monotonic()
    port, running = start()
    bystander = Bystander(port)
    for burst_no in range(max(1, count // BURST)):
        name, fault = kinds[burst_no % len(kinds)]

        def one(fault: Callable[[int], None] = fault, port: int = port) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                fault(port)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(BURST)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(3 * IO_TIMEOUT)
        result.connections += BURST
        if running() and bystander.ok():
            continue
        result.sessions_lost += 1
        result.lost_by_kind[name] = result.lost_by_kind.get(name, 0) + 1
        note(f"    session lost after a burst of '{name}'; starting the tunnel again")
        bystander.close()
        port, running = start()
        bystander = Bystander(port)
    bystander.close()
    result.seconds = time.monotonic() - began
    return result


# -- soak: the client, as its own process -----------------------------------------------------


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Conn:
    sock: socket.socket
    bulk: bool
    visits_left: int
    expect: int = 0
    got: int = 0
    due: float = 0.0
    sent_at: float = 0.0
    buf: bytearray = field(default_factory=bytearray)


def soak_client(port: int, connections: int, seconds: float) -> None:
    """Hold `connections` connections with churn for `seconds`; a JSON line a minute."""
    selector = selectors.DefaultSelector()
    stats = {"requests": 0, "failed": 0, "connections": 0}
    conns: set[_Conn] = set()

    def open_one() -> bool:
        bulk = random.random() < 0.1
        try:
            sock = _connect(port)
        except OSError:
            stats["failed"] += 1
            return False
        sock.setblocking(False)
        conn = _Conn(sock, bulk, random.randint(5, 30), due=time.monotonic() + random.random())
        if not bulk:
            sock.send(f"ECHO {MSG}\n".encode())
        conns.add(conn)
        stats["connections"] += 1
        return True

    def close(conn: _Conn, failed: bool) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn.sock)
        conn.sock.close()
        conns.discard(conn)
        if failed:
            stats["failed"] += 1

    for _ in range(connections):
        open_one()
    end = time.monotonic() + seconds
    next_report = time.monotonic() + 60
    minute = 0
    while time.monotonic() < end:
        now = time.monotonic()
        for conn in list(conns):
            if conn.expect == 0 and now >= conn.due:
                if conn.visits_left <= 0:
                    close(conn, failed=False)
                    continue
                conn.visits_left -= 1
                conn.expect = (1 << 20) if conn.bulk else MSG
                conn.got, conn.sent_at = 0, now
                try:
                    conn.sock.send(f"BULK {1 << 20}\n".encode() if conn.bulk else PAYLOAD)
                except OSError:
                    close(conn, failed=True)
                    continue
                selector.register(conn.sock, selectors.EVENT_READ, conn)
            elif conn.expect and now - conn.sent_at > IO_TIMEOUT:
                close(conn, failed=True)
        while len(conns) < connections and open_one():
            pass
        for key, _ in selector.select(0.05):
            conn = key.data
            try:
                data = conn.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                close(conn, failed=True)
                continue
            conn.got += len(data)
            if not data or conn.got >= conn.expect:
                ok = conn.got >= conn.expect
                selector.unregister(conn.sock)
                stats["requests"] += ok
                conn.expect = 0
                conn.due = time.monotonic() + random.uniform(0.5, 1.5)
                if conn.bulk or not ok:  # a download ends its connection
                    close(conn, failed=not ok)
        if time.monotonic() >= next_report:
            minute += 1
            next_report += 60
            print(json.dumps({"minute": minute, **stats, "open": len(conns)}), flush=True)
    for conn in list(conns):
        close(conn, failed=False)
    print(json.dumps({"minute": "end", **stats}), flush=True)


# -- soak: the parent's samples of a tunnel process --------------------------------------------


def sample(pid: int) -> dict[str, int]:
    """Open fds, threads and resident memory (KiB) of process `pid`."""
    proc = Path(f"/proc/{pid}")
    try:
        fds = len(os.listdir(proc / "fd"))
        status = (proc / "status").read_text()
    except OSError:
        return {"fds": -1, "threads": -1, "rss_kib": -1}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"fds": fds, "threads": int(fields["Threads"]),
            "rss_kib": int(fields["VmRSS"].split()[0])}


@dataclass
class SoakResult:
    samples: list[dict[str, int]] = field(default_factory=list)  # one a minute
    client: list[dict[str, object]] = field(default_factory=list)  # the client's lines

    @property
    def failed(self) -> int:
        return int(self.client[-1].get("failed", -1)) if self.client else -1  # type: ignore[call-overload]

    @property
    def requests(self) -> int:
        return int(self.client[-1].get("requests", 0)) if self.client else 0  # type: ignore[call-overload]

    def flat(self) -> tuple[bool, str]:
        """Minute 1 against the last minute: the same threads, fds within 5%, RSS within 10%."""
        if len(self.samples) < 2:
            return False, "fewer than two samples"
        first, last = self.samples[0], self.samples[-1]
        ok = (first["threads"] == last["threads"]
              and abs(last["fds"] - first["fds"]) <= 0.05 * first["fds"]
              and last["rss_kib"] <= 1.10 * first["rss_kib"])
        return ok, (f"fds {first['fds']} -> {last['fds']}, threads {first['threads']} -> "
                    f"{last['threads']}, RSS {first['rss_kib'] / 1024:.1f} -> "
                    f"{last['rss_kib'] / 1024:.1f} MiB")


def run_soak(tunnels: dict[str, tuple[int, int]], minutes: int, connections: int,
             note: Callable[[str], None]) -> dict[str, SoakResult]:
    """Soak every tunnel (name -> (port, pid)) at the same time, one client process each."""
    results = {name: SoakResult() for name in tunnels}
    clients = {}
    for name, (port, _) in tunnels.items():
        clients[name] = subprocess.Popen(
            [sys.executable, __file__, "soak-client", "--port", str(port),
             "--connections", str(connections), "--seconds", str(minutes * 60 + 5)],
            stdout=subprocess.PIPE, text=True)
    readers = []
    for name, proc in clients.items():
        def read(name: str = name, proc: subprocess.Popen[str] = proc) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                with contextlib.suppress(ValueError):
                    results[name].client.append(json.loads(line))
        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        readers.append(thread)
    try:
        start = time.monotonic()
        for minute in range(1, minutes + 1):
            time.sleep(max(0.0, start + 60 * minute + 2 - time.monotonic()))
            row = []
            for name, (_, pid) in tunnels.items():
                results[name].samples.append(sample(pid))
                got = results[name].samples[-1]
                done = results[name].client[-1] if results[name].client else {}
                row.append(f"{name}: {got['fds']} fds, {got['threads']} threads, "
                           f"{got['rss_kib'] / 1024:.1f} MiB, "
                           f"{done.get('requests', '?')} requests, "
                           f"{done.get('failed', '?')} failed")
            note(f"  soak minute {minute}: " + "; ".join(row))
        for proc in clients.values():
            proc.wait(timeout=120)
        for thread in readers:
            thread.join(10)
    finally:
        for proc in clients.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="soak client of scripts/bench.py")
    parser.add_argument("command", choices=["soak-client"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=600)
    args = parser.parse_args()
    soak_client(args.port, args.connections, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
