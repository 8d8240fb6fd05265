"""Benchmark the data path: direct, OpenSSH `ssh -L`, sshtunnel and our Forwarder.

Everything runs on this machine's loopback: a throwaway OpenSSH sshd
(sandbox.sshd.Sshd), a target server (scripts/bench_server.py) and one
tunnel per candidate, each in its own process. Measured, in one run:

- bulk download throughput (the target streams N bytes; median of several runs), and
  the CPU time the tunnel process spends per GB of it,
- bulk upload throughput (the target reads N bytes, then confirms),
- request latency p50/p99 with a new connection per request and on one kept-alive
  connection (64-byte echo),
- how many of 500 concurrent connections get their request answered.

With --faults and --soak MINUTES (scripts/bench_faults.py), instead: sessions lost per
1,000 faulted connections, and N concurrent connections with churn for MINUTES with the
tunnel's fds, threads and memory sampled every minute; OpenSSH's `ssh -N -L` (its
default cipher) beside our forwarder in the same run.

Usage: python scripts/bench.py [--quick] [--faults [N]] [--soak MINUTES]

Every load loop is bounded in count and time; only processes started here are
stopped, by PID, in `finally`. Not a timed test: run it by hand on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import paramiko  # noqa: E402
from bench_faults import FAULTS, run_faults, run_soak  # noqa: E402

from sandbox.sshd import Sshd, free_port  # noqa: E402

READY_TIMEOUT = 20.0
IO_TIMEOUT = 30.0
PHASE_TIME_CAP = 10.0  # no latency loop runs longer than this
LATENCY_ROUNDS = 5
MSG = 64
ECHO_PAYLOAD = bytes(range(MSG))
GCM = "aes128-gcm@openssh.com"
TUNNEL_SCRIPT = str(HERE / "bench_tunnel.py")


# -- processes ---------------------------------------------------------------------------------


class Processes:
    """Every process this script starts, stopped (by PID, via Popen) on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one process we started (a tunnel about to be replaced)."""
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        _terminate(proc)

    def stop_all(self) -> None:
        """Close stdin (our helpers then exit on their own), then terminate, then kill."""
        for proc in self.procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        deadline = time.monotonic() + 3.0
        for proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            _terminate(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process we started if it still runs, then kill it after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def read_line(proc: subprocess.Popen[bytes], prefix: str, timeout: float) -> str:
    """First stdout line of `proc` starting with `prefix` (bounded by `timeout`)."""
    found: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(prefix):
                found.append(line)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        raise RuntimeError(f"{proc.args!r} did not print {prefix!r} within {timeout:.0f}s")
    return found[0]


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


# -- candidates --------------------------------------------------------------------------------


@dataclass
class Candidate:
    name: str
    port: int | None = None
    note: str = ""
    error: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    cpu_per_gb: list[float] = field(default_factory=list)
    bulk: list[float] = field(default_factory=list)
    upload: list[float] = field(default_factory=list)
    new_samples: list[float] = field(default_factory=list)
    ka_samples: list[float] = field(default_factory=list)
    concurrent_ok: int | None = None

    @property
    def bulk_median(self) -> float | None:
        return statistics.median(self.bulk) if self.bulk else None

    @property
    def new_conn(self) -> tuple[float, float] | None:
        return percentiles(self.new_samples) if self.new_samples else None

    @property
    def kept_alive(self) -> tuple[float, float] | None:
        return percentiles(self.ka_samples) if self.ka_samples else None


def start_openssh(
    procs: Processes, sshd: Sshd, workdir: Path, target: int, cipher: str | None
) -> tuple[int, subprocess.Popen[bytes], str]:
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line("127.0.0.1") + "\n")
    port = free_port("127.0.0.1")
    log = workdir / f"ssh-{cipher or 'default'}.log"
    # Over a ProxyCommand (`sshd -i`, as `up` reaches the sandbox), or sshd's TCP port.
    route = (["-o", f"ProxyCommand={sshd.proxy_command}"] if sshd.proxy_command
             else ["-p", str(sshd.port)])
    argv = [
        "ssh", "-F", "/dev/null", "-v", "-N",
        "-o", "BatchMode=yes",
        "-o", "ExitOnForwardFailure=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "IdentitiesOnly=yes",
        "-i", str(sshd.client_key),
        *route,
        "-L", f"127.0.0.1:{port}:127.0.0.1:{target}",
    ]  # fmt: skip
    if cipher:
        argv += ["-c", cipher]
    argv.append(f"{sshd.user}@127.0.0.1")
    with log.open("wb") as err:
        proc = procs.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    wait_ready(port, proc)
    match = re.search(r"kex: server->client cipher: (\S+)", log.read_text(errors="replace"))
    return port, proc, match.group(1) if match else "?"


def start_python_tunnel(
    procs: Processes, sshd: Sshd, target: int, impl: str, extra: list[str],
    tree: Path | None = None,
) -> tuple[int, subprocess.Popen[bytes], str]:
    """bench_tunnel.py as its own process; with `tree`, that checkout's package is used."""
    env = dict(os.environ, BENCH_TREE=str(tree.resolve())) if tree is not None else None
    argv = [
        sys.executable, TUNNEL_SCRIPT,
        "--impl", impl,
        *(["--proxy-command", sshd.proxy_command] if sshd.proxy_command
          else ["--ssh-port", str(sshd.port)]),
        "--user", sshd.user,
        "--key", str(sshd.client_key),
        "--host-key-line", sshd.host_key_line,
        "--target-port", str(target),
        *extra,
    ]  # fmt: skip
    proc = procs.start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    _, port, cipher = read_line(proc, "READY", READY_TIMEOUT).split()
    wait_ready(int(port), proc)
    return int(port), proc, cipher


# -- report ------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "n/a"
    return f"{value / base:.2f}x"


def table(cands: list[Candidate], baseline: Candidate, concurrency: int) -> str:
    head = (
        "| path | cipher | bulk MB/s | vs ssh default | tunnel CPU s/GB | upload MB/s "
        "| new conn p50 / p99 ms "
        "| kept-alive p50 / p99 ms | kept-alive p50 vs ssh default "
        f"| {concurrency} concurrent |"
    )
    rows = [head, "|" + "---|" * 10]
    base_ka = baseline.kept_alive[0] if baseline.kept_alive else None
    for c in cands:
        if c.error:
            rows.append(f"| {c.name} | n/a: {c.error} |" + " |" * 8)
            continue
        new = f"{fmt(c.new_conn[0], '.3f')} / {fmt(c.new_conn[1], '.3f')}" if c.new_conn else "n/a"
        ka = (
            f"{fmt(c.kept_alive[0], '.3f')} / {fmt(c.kept_alive[1], '.3f')}"
            if c.kept_alive
            else "n/a"
        )
        ka_p50 = c.kept_alive[0] if c.kept_alive else None
        conc = "n/a" if c.concurrent_ok is None else f"{c.concurrent_ok}/{concurrency}"
        rows.append(
            f"| {c.name} | {c.note} | {fmt(c.bulk_median, '.0f')} "
            f"| {ratio(c.bulk_median, baseline.bulk_median)} "
            f"| {fmt(statistics.median(c.cpu_per_gb) if c.cpu_per_gb else None, '.2f')} "
            f"| {fmt(statistics.median(c.upload) if c.upload else None, '.0f')} "
            f"| {new} | {ka} "
            f"| {ratio(ka_p50, base_ka)} | {conc} |"
        )
    return "\n".join(rows)


def targets(by_name: dict[str, Candidate], concurrency: int) -> list[tuple[bool | None, str]]:
    """The targets of issue 10 (and the earlier ones), each a ratio within this run."""
    ours, ssh, gcm = by_name["forwarder"], by_name["openssh default"], by_name["openssh gcm"]
    tun = by_name["sshtunnel"]
    out: list[tuple[bool | None, str]] = []

    def ratio_check(mine: float | None, theirs: float | None, what: str, limit: float,
                    at_least: bool) -> None:
        if not mine or not theirs:
            out.append((None, f"{what}: not measured"))
            return
        r = mine / theirs
        ok = r >= limit if at_least else r <= limit
        out.append((ok, f"{what}: forwarder {r:.2f}x (target {'>=' if at_least else '<='} "
                        f"{limit}x)"))

    ratio_check(ours.bulk_median, ssh.bulk_median, "bulk vs OpenSSH default", 1.0, True)
    ratio_check(ours.bulk_median, gcm.bulk_median, "bulk vs OpenSSH aes128-gcm", 0.9, True)
    if not tun.error:
        ratio_check(ours.bulk_median, tun.bulk_median, "bulk vs sshtunnel", 2.5, True)
    new, ssh_new = ours.new_conn, ssh.new_conn
    ratio_check(new[0] if new else None, ssh_new[0] if ssh_new else None,
                "new-connection p50 vs OpenSSH default", 1.5, False)
    ratio_check(new[1] if new else None, ssh_new[1] if ssh_new else None,
                "new-connection p99 vs OpenSSH default", 2.0, False)
    ka, ssh_ka = ours.kept_alive, ssh.kept_alive
    ratio_check(ka[0] if ka else None, ssh_ka[0] if ssh_ka else None,
                "kept-alive p50 vs OpenSSH default", 1.2, False)
    if ours.concurrent_ok is not None:
        out.append((ours.concurrent_ok == concurrency,
                    f"concurrency: forwarder served {ours.concurrent_ok}/{concurrency} "
                    "(target all)"))
    else:
        out.append((None, "concurrency: not measured"))
    return out


# -- main --------------------------------------------------------------------------------------


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so every `finally` below runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_phase(cands: list[Candidate], label: str, fn: Callable[[Candidate], None]) -> None:
    for c in cands:
        if c.error or c.port is None:
            continue
        try:
            fn(c)
        except Exception as exc:
            print(f"  {c.name}: {label} failed: {exc}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (smaller, fewer)")
    parser.add_argument("--bulk-mib", type=int, help="bulk download size (default 512, quick 64)")
    parser.add_argument("--runs", type=int, help="bulk runs per path (default 3)")
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument(
        "--only", help="comma-separated subset of: direct,openssh,sshtunnel,forwarder"
    )
    parser.add_argument(
        "--phases",
        default=None,
        help="comma-separated subset of: bulk,upload,latency,concurrency (default: all, "
        "unless --faults or --soak is given)",
    )
    parser.add_argument(
        "--faults", type=int, nargs="?", const=1000, default=0, metavar="N",
        help="sessions lost in N faulted connections (default 1000), OpenSSH beside ours",
    )
    parser.add_argument(
        "--soak", type=int, default=0, metavar="MINUTES",
        help="hold --soak-connections connections with churn for MINUTES, sampling the "
        "tunnels' fds, threads and memory every minute",
    )
    parser.add_argument("--soak-connections", type=int, default=500)
    parser.add_argument(
        "--forwarder-args",
        default="",
        help="extra bench_tunnel.py options for our forwarder (tuning experiments)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also measure our forwarder with these bench_tunnel.py options",
    )
    parser.add_argument(
        "--route", choices=["tcp", "proxy"], default="tcp",
        help="reach sshd on its TCP port (default), or through a ProxyCommand running "
        "`sshd -i` for each tunnel, as `up` reaches the test sandbox",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also measure the forwarder of another checkout (e.g. `git worktree` of main)",
    )
    args = parser.parse_args()
    bulk_mib = args.bulk_mib or (64 if args.quick else 512)
    runs = args.runs or 3
    new_count = 300 if args.quick else 2000
    ka_count = 1000 if args.quick else 5000
    only = set(args.only.split(",")) if args.only else None

    print(
        f"bench: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"paramiko {paramiko.__version__}, "
        + subprocess.run(["ssh", "-V"], check=False, capture_output=True, text=True).stderr.strip(),
        flush=True,
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"route to sshd: {'ProxyCommand sshd -i' if args.route == 'proxy' else 'TCP'}",
          flush=True)
    print(
        f"bulk {bulk_mib} MiB x {runs} runs (median); latency {new_count} new-connection and "
        f"{ka_count} kept-alive 64-byte echoes; {args.concurrency} concurrent connections",
        flush=True,
    )
    procs = Processes()
    with terminate_gracefully(), tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        workdir = Path(tmp)
        try:
            listen = None if args.route == "proxy" else ("127.0.0.1", 0)
            with Sshd(workdir / "sshd", listen=listen) as sshd:
                server = procs.start(
                    [sys.executable, str(HERE / "bench_server.py")],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                target = int(read_line(server, "PORT", READY_TIMEOUT).split()[1])
                status = 0
                if args.faults or args.soak:
                    status = suites(procs, sshd, workdir, target, args)
                    if args.phases is None:
                        return status
                cands = setup(procs, sshd, workdir, target, only, args)
                phases = set((args.phases or "bulk,upload,latency,concurrency").split(","))
                return measure(cands, phases, bulk_mib, runs, new_count, ka_count,
                               args.concurrency) or status
        finally:
            procs.stop_all()


def suites(procs: Processes, sshd: Sshd, workdir: Path, target: int,
           args: argparse.Namespace) -> int:
    """The fault and soak suites (scripts/bench_faults.py); 1 if a target was missed."""
    launchers: dict[str, Callable[[], tuple[int, subprocess.Popen[bytes], str]]] = {
        "openssh default": lambda: start_openssh(procs, sshd, workdir, target, None),
        "forwarder": lambda: start_python_tunnel(procs, sshd, target, "forwarder", []),
    }
    if args.before is not None:
        launchers["forwarder before"] = lambda: start_python_tunnel(
            procs, sshd, target, "forwarder", [], args.before)
    results: list[tuple[bool, str]] = []
    if args.faults:
        print(f"faults: {args.faults} connections per tunnel, in bursts of 10, each kind in "
              f"turn: {', '.join(FAULTS)}", flush=True)
        rows = ["| tunnel | faulted connections | sessions lost | per 1,000 | sshd dropped "
                "a session | lost after | seconds |", "|---|---|---|---|---|---|---|"]
        lost: dict[str, float] = {}
        for name, launch in launchers.items():
            current: list[subprocess.Popen[bytes]] = []

            def start(launch: Callable[[], tuple[int, subprocess.Popen[bytes], str]] = launch,
                      current: list[subprocess.Popen[bytes]] = current
                      ) -> tuple[int, Callable[[], bool]]:
                if current:
                    procs.stop(current.pop())
                port, proc, _ = launch()
                current.append(proc)
                return port, lambda: proc.poll() is None

            offset = sshd.log_path.stat().st_size
            result = run_faults(start, args.faults, lambda text: print(text, flush=True))
            for proc in current:
                procs.stop(proc)
            drops = sum("Disconnecting" in line or "nonexistent channel" in line
                        for line in sshd.log_path.read_bytes()[offset:].decode(
                            errors="replace").splitlines())
            lost[name] = result.per_thousand
            kinds = ", ".join(f"{k} ({n})" for k, n in result.lost_by_kind.items()) or "-"
            rows.append(f"| {name} | {result.connections} | {result.sessions_lost} | "
                        f"{result.per_thousand:.1f} | {drops} | {kinds} | {result.seconds:.0f} |")
            print(f"  faults: {name} lost {result.sessions_lost} sessions in "
                  f"{result.connections} connections", flush=True)
        print("\n".join(["", *rows, ""]))
        results.append((lost["forwarder"] == 0,
                        f"faults: forwarder lost {lost['forwarder']:.1f} sessions per 1,000 "
                        f"faulted connections, OpenSSH {lost['openssh default']:.1f} (target 0)"))
    if args.soak:
        tunnels = {}
        for name, launch in launchers.items():
            port, proc, _ = launch()
            tunnels[name] = (port, proc.pid)
        print(f"soak: {args.soak_connections} connections per tunnel with churn for "
              f"{args.soak} minutes, both tunnels at once", flush=True)
        soaked = run_soak(tunnels, args.soak, args.soak_connections,
                          lambda text: print(text, flush=True))
        print()
        print("| tunnel | requests | failed | minute 1 -> last: fds, threads, RSS | flat |")
        print("|---|---|---|---|---|")
        for name, result in soaked.items():
            flat, detail = result.flat()
            print(f"| {name} | {result.requests} | {result.failed} | {detail} | "
                  f"{'yes' if flat else 'no'} |")
            if name == "forwarder":
                results.append((result.failed == 0 and flat,
                                f"soak: forwarder {result.requests} requests, {result.failed} "
                                f"failed; {detail} (target: none failed, flat)"))
        print()
    for ok, text in results:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 1 if any(not ok for ok, _ in results) else 0


def setup(
    procs: Processes,
    sshd: Sshd,
    workdir: Path,
    target: int,
    only: set[str] | None,
    args: argparse.Namespace,
) -> list[Candidate]:
    def want(group: str) -> bool:
        return only is None or group in only

    cands: list[Candidate] = []

    def add(name: str, group: str, starter: Callable[[], tuple[int, object, str]]) -> None:
        cand = Candidate(name)
        cands.append(cand)
        if not want(group):
            cand.error = "skipped"
            return
        try:
            cand.port, proc, cand.note = starter()
            cand.proc = proc if isinstance(proc, subprocess.Popen) else None
        except Exception as exc:
            cand.error = str(exc).splitlines()[0][:80]
        print(f"  {name}: {'port ' + str(cand.port) if cand.port else cand.error}", flush=True)

    def direct() -> tuple[int, object, str]:
        wait_ready(target, None)
        return target, None, "none"

    fwd_extra = shlex.split(args.forwarder_args)
    add("direct", "direct", direct)
    add("openssh default", "openssh", lambda: start_openssh(procs, sshd, workdir, target, None))
    add("openssh gcm", "openssh", lambda: start_openssh(procs, sshd, workdir, target, GCM))
    if sshd.proxy_command:
        cands.append(Candidate("sshtunnel", error="TCP route only"))
    else:
        add("sshtunnel", "sshtunnel",
            lambda: start_python_tunnel(procs, sshd, target, "sshtunnel", []))
    add(
        "forwarder",
        "forwarder",
        lambda: start_python_tunnel(procs, sshd, target, "forwarder", fwd_extra),
    )
    if args.before is not None:
        add("forwarder before", "forwarder",
            lambda: start_python_tunnel(procs, sshd, target, "forwarder", [], args.before))
    for spec in args.variant:
        name, _, extra = spec.partition("=")
        add(
            f"forwarder {name}",
            "forwarder",
            lambda extra=extra: start_python_tunnel(  # type: ignore[misc]
                procs, sshd, target, "forwarder", shlex.split(extra)
            ),
        )
    return cands


def measure(
    cands: list[Candidate],
    phases: set[str],
    bulk_mib: int,
    runs: int,
    new_count: int,
    ka_count: int,
    conc: int,
) -> int:
    size = bulk_mib * 1024 * 1024

    def bulk(c: Candidate) -> None:
        assert c.port is not None
        pid = c.proc.pid if c.proc else None
        before = cpu_seconds(pid)
        c.bulk.append(bulk_once(c.port, size))
        used = ""
        if pid is not None:
            c.cpu_per_gb.append((cpu_seconds(pid) - before) / (size / 1e9))
            used = f", tunnel process {c.cpu_per_gb[-1]:.2f} CPU s/GB"
        print(f"  bulk run {len(c.bulk)}: {c.name} {c.bulk[-1]:.0f} MB/s{used}", flush=True)

    def upload(c: Candidate) -> None:
        assert c.port is not None
        c.upload.append(upload_once(c.port, size))
        print(f"  upload run {len(c.upload)}: {c.name} {c.upload[-1]:.0f} MB/s", flush=True)

    for _ in range(runs if "bulk" in phases else 0):
        # Rounds are interleaved so a slow moment of the machine hits every path alike.
        run_phase(cands, "bulk", bulk)
    for _ in range(runs if "upload" in phases else 0):
        run_phase(cands, "upload", upload)

    def latency(c: Candidate) -> None:
        assert c.port is not None
        c.new_samples += latency_new_connection(c.port, new_count // LATENCY_ROUNDS)
        c.ka_samples += latency_kept_alive(c.port, ka_count // LATENCY_ROUNDS)

    # Rounds are interleaved here too; percentiles are over all rounds' samples.
    for _ in range(LATENCY_ROUNDS if "latency" in phases else 0):
        run_phase(cands, "latency", latency)
    for c in cands:
        if c.new_conn and c.kept_alive:
            print(
                f"  latency: {c.name} new p50 {c.new_conn[0]:.3f} ms "
                f"({len(c.new_samples)} samples), kept-alive p50 {c.kept_alive[0]:.3f} ms "
                f"({len(c.ka_samples)} samples)",
                flush=True,
            )

    def many(c: Candidate) -> None:
        assert c.port is not None
        c.concurrent_ok = concurrent(c.port, conc, timeout=10.0)
        print(f"  concurrent: {c.name} {c.concurrent_ok}/{conc}", flush=True)

    if "concurrency" in phases:
        run_phase(cands, "concurrency", many)

    by_name = {c.name: c for c in cands}
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(table(cands, by_name["openssh default"], conc))
    print()
    results = targets(by_name, conc)
    for ok, text in results:
        print(f"{'n/a ' if ok is None else 'PASS' if ok else 'FAIL'}  {text}")
    return 1 if any(ok is False for ok, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
