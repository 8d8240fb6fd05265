"""The report of scripts/bench.py: each candidate's samples, the table with ratios against
the OpenSSH baseline of the same run, and the issue's targets met or not."""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass, field

from bench_client import percentiles

GCM = "aes128-gcm@openssh.com"


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
