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
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import paramiko  # noqa: E402
from bench_client import (  # noqa: E402
    READY_TIMEOUT,
    bulk_once,
    concurrent,
    cpu_seconds,
    latency_kept_alive,
    latency_new_connection,
    upload_once,
    wait_ready,
)
from bench_faults import FAULTS, run_faults, run_soak  # noqa: E402
from bench_procs import Processes, read_line, start_openssh, start_python_tunnel  # noqa: E402
from bench_report import GCM, Candidate, table, targets  # noqa: E402

from sandbox.sshd import Sshd  # noqa: E402

LATENCY_ROUNDS = 5


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
