"""Runtimes across processes: list, status, logs, profiles show. Returns data.

Works from state records alone, so any terminal can inspect or stop a runtime
that another process (a foreground `up`, a supervisor, a `run`) owns. A record
whose owner is gone is reported as stale and cleaned by `down`; one whose Spot
VM was preempted stays as `preempted` until `down`. A `{run}` profile has one
row per runtime made from it (PROFILE-SUFFIX); naming the profile in `down`
means all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import activity, health, providers, redact, ssh, state
from .bootstrap import start_agent
from .errors import (
    CloudError,
    NotRunningError,
    PreemptedError,
    RemoteRuntimeError,
    SSHError,
    UsageError,
)
from .profiles import Profile, ProfileSet


@dataclass
class RuntimeStatus:
    """One profile and what is known of its runtime."""

    profile: Profile
    record: state.Record | None
    state: str  # "up", "starting", "down", "stale" or "preempted"
    health: health.HealthReport | None = None
    live_status: str | None = None  # GCE instance status with --refresh
    activity: activity.Activity | None = None  # with gce.idle_stop_minutes
    gpu: str | None = None  # what nvidia-smi says (status), or why it failed
    gpu_ok: bool | None = None

    def to_dict(self, *, show_token: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.profile.name,
            "kind": self.profile.kind,
            "target": self.profile.target,
            "state": self.state,
            "jupyter_port": self.profile.jupyter.port,
        }
        if self.profile.base:
            data["profile"] = self.profile.base  # made from a {run} profile
        if self.live_status is not None:
            data["instance_status"] = self.live_status
        record = self.record
        if record is not None and self.state == "up":
            url = record.url
            data.update(
                url=url if show_token else redact.url(url),
                port=record.port,
                pid=record.pid,
                since=record.since,
                detached=record.detached,
                reconnects=record.reconnects,
                stack=record.stack,
                routes=list(record.routes),
            )
            if show_token:
                data["token"] = record.token
        elif record is not None and self.state == "preempted":
            data["ended"] = record.ended or "its Spot VM was preempted"
        elif record is not None:
            data["stale"] = f"owner process {record.pid} is gone"
        if self.health is not None:
            data["health"] = self.health.to_dict()
        if self.activity is not None:
            data.update(self.activity.to_dict())
        if self.gpu is not None:
            data["gpu"] = {"ok": self.gpu_ok, "detail": self.gpu}
        return data


def _status_of(profile: Profile, record: state.Record | None) -> RuntimeStatus:
    if record is None:
        return RuntimeStatus(profile, None, "down")
    if record.phase == "preempted":
        return RuntimeStatus(profile, record, "preempted")
    if not record.alive:
        return RuntimeStatus(profile, record, "stale")
    return RuntimeStatus(profile, record, "starting" if record.phase == "starting" else "up")


def list_runtimes(
    profiles: ProfileSet, *, check_health: bool = True, refresh: bool = False
) -> tuple[list[RuntimeStatus], list[str]]:
    """Every profile with its runtime state; unreadable records become warnings.
    `refresh` asks the cloud API for each GCE VM's live status."""
    records, problems = state.read_all()
    rows = []
    listed: set[str] = set()
    for profile in profiles.profiles.values():
        pairs: list[tuple[Profile, state.Record | None]] = [(profile, records.get(profile.name))]
        if profile.run_template:  # a row per runtime made from it, or one "down" row
            made = sorted((r for r in records.values() if r.profile == profile.name),
                          key=lambda r: r.since)
            pairs = [(profiles.get(r.name), r) for r in made] or [(profile, None)]
        for runtime_profile, record in pairs:
            listed.update([record.name] if record is not None else [])
            rows.append(_row(runtime_profile, record, check_health=check_health,
                             refresh=refresh))
    for name in sorted(set(records) - listed):
        problems.append(f"runtime '{name}' is recorded but its profile is not in {profiles.path}")
    return rows, problems


def _row(profile: Profile, record: state.Record | None, *, check_health: bool,
         refresh: bool) -> RuntimeStatus:
    row = _status_of(profile, record)
    if check_health and row.state == "up" and record is not None:
        row.health = health.quick_check(record.port, record.token,
                                        routes=tuple(record.routes))
        if row.health.ok and profile.idle_stop_seconds is not None:
            row.activity = activity.read(record.port, record.token, profile.idle_stop_seconds)
    failing = row.state == "stale" or (row.health is not None and not row.health.ok)
    when = _preempted_at(profile, record) if record is not None and failing else None
    if record is not None and when:
        row.state, record.ended = "preempted", f"its Spot VM was preempted at {when}"
    if refresh and profile.gce is not None and not profile.run_template:
        row.live_status = _live_status(profile)  # (a template's row has no VM of its own)
    return row


def _spot(profile: Profile) -> bool:
    return bool(profile.gce and profile.gce.create and profile.gce.create.spot)


def _preempted_at(profile: Profile, record: state.Record) -> str | None:
    """When the runtime's Spot VM was preempted (asked of the Compute API), or None."""
    if not _spot(profile):
        return None
    from .providers.gce import preemption

    instance_id = str(record.endpoint.get("extra", {}).get("instance_id", ""))
    try:
        return preemption(profile, instance_id)
    except CloudError:
        return None


def _live_status(profile: Profile) -> str:
    try:
        from .providers.gce import live_status

        return str(live_status(profile))
    except CloudError as exc:
        return f"unknown ({exc.message})"


def _live_record(profiles: ProfileSet, name: str) -> tuple[Profile, state.Record]:
    profile = profiles.get(name)
    if profile.run_template:  # the profile's only runtime, if it has exactly one
        made = runtimes_of(profile)
        if len(made) != 1:
            listed = ", ".join(r.name for r in made) or "none"
            raise UsageError(f"profile '{name}' makes a runtime per run; name one of its "
                             f"runtimes (up: {listed})", hint="see 'remote-runtime list'")
        profile, name = profiles.get(made[0].name), made[0].name
    record = state.get(name)
    if record is not None and record.phase == "preempted":
        raise PreemptedError(f"runtime '{name}': {record.ended or 'its Spot VM was preempted'}",
                             hint=f"clean up with 'remote-runtime down {name}'")
    if record is None:
        raise NotRunningError(f"runtime '{name}' is not up",
                              hint=f"start it with 'remote-runtime up {name} --detach'")
    if not record.alive:
        raise NotRunningError(
            f"runtime '{name}' is not up: its owner process {record.pid} is gone",
            hint=f"clean up with 'remote-runtime down {name}'")
    if record.phase == "starting":
        raise NotRunningError(f"runtime '{name}' is still starting (pid {record.pid})")
    return profile, record


def runtimes_of(profile: Profile) -> list[state.Record]:
    """The recorded runtimes made from a {run} profile, oldest first."""
    records, _problems = state.read_all()
    return sorted((r for r in records.values() if r.profile == profile.profile_name),
                  key=lambda r: r.since)


def status(profiles: ProfileSet, name: str) -> RuntimeStatus:
    """Run the full health check now, through the runtime's forwarded port (and nvidia-smi
    over SSH on a VM with GPUs). A preempted Spot VM raises PreemptedError."""
    profile, record = _live_record(profiles, name)
    row = _status_of(profile, record)
    row.health = health.check(record.port, record.token, routes=tuple(record.routes))
    if not row.health.ok and (when := _preempted_at(profile, record)):
        raise PreemptedError(f"runtime '{record.name}': its Spot VM was preempted at {when}",
                             hint=f"clean up with 'remote-runtime down {record.name}'")
    if record.endpoint.get("extra", {}).get("gpus"):
        row.gpu_ok, row.gpu = _gpu(record)
    if profile.idle_stop_seconds is not None and row.health.ok:
        row.activity = activity.read(record.port, record.token, profile.idle_stop_seconds)
    return row


def _gpu(record: state.Record) -> tuple[bool, str]:
    from .providers.gce import gpu

    try:
        with ssh.connect(ssh.Endpoint.from_dict(record.endpoint)) as session:
            return True, gpu.describe(gpu.query(session))
    except RemoteRuntimeError as exc:
        return False, exc.message


def logs(profiles: ProfileSet, name: str, *, follow: bool, lines: int,
         write: Callable[[str], None]) -> None:
    """Write the remote server's log (token hidden) to `write`, line by line."""
    profile, record = _live_record(profiles, name)
    if not record.endpoint:
        raise NotRunningError(f"runtime '{name}' has no recorded endpoint")
    args = ["logs", record.run_id] + (["-f"] if follow else [])
    with ssh.connect(ssh.Endpoint.from_dict(record.endpoint)) as session:
        process = start_agent(session, profile.jupyter.python, *args,
                              env={"RR_LINES": str(int(lines))})
        try:
            while True:
                try:
                    line = process.read_line(timeout=3600)
                except SSHError:
                    break
                if line is None:
                    break
                write(redact.text(line, record.token))
        finally:
            process.close()


def show_profile(profiles: ProfileSet, name: str) -> ssh.Connection:
    """The effective SSH connection of a profile (`profiles show`), resolved as OpenSSH
    would, without connecting. A GCE profile's address, host-key alias and host keys
    come from the Compute API at `up`: shown are the settings known before that."""
    profile = profiles.get(name)
    if profile.ssh is not None:
        # A plain host's provider only reads the profile (no side effects).
        endpoint = providers.for_profile(profile).prepare(lambda _message: None)
        return ssh.describe_connection(name, endpoint)
    assert profile.gce is not None
    gce = profile.gce
    user = gce.user or "your local user name (with OS Login: the name OS Login gives you)"
    return ssh.Connection(
        name=name, source="profile (gce)",
        notes=[f"{profile.target}: the address ({gce.address}), the host-key alias "
               "compute.<instance id> and the VM's published host keys come from the "
               "Compute API when `up` runs",
               f"user: {user}; identity "
               f"file: {gce.identity_file or '~/.ssh/google_compute_engine'}; known_hosts: "
               f"{gce.known_hosts or '~/.ssh/google_compute_known_hosts'}"])
