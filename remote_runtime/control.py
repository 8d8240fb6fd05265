"""Runtimes across processes: list, status, down, logs. Returns data.

Works from state records alone, so any terminal can inspect or stop a runtime
that another process (a foreground `up`, a supervisor, a `run`) owns. A record
whose owner is gone is reported as stale and cleaned by `down`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import health, procs, providers, redact, ssh, state, stops
from .bootstrap import start_agent
from .errors import CloudError, NotRunningError, RemoteRuntimeError, SSHError, StateError
from .profiles import Profile, ProfileSet
from .remote import RemoteHost, ServerHandle

STOP_WAIT = 90.0  # a supervisor stops the server (<= 40 s) and closes everything
TAKE_WAIT = 10.0  # an owner's watcher takes a stop request within a poll (0.25 s)


@dataclass
class RuntimeStatus:
    """One profile and what is known of its runtime."""

    profile: Profile
    record: state.Record | None
    state: str  # "up", "starting", "down" or "stale"
    health: health.HealthReport | None = None
    live_status: str | None = None  # GCE instance status with --refresh

    def to_dict(self, *, show_token: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.profile.name,
            "kind": self.profile.kind,
            "target": self.profile.target,
            "state": self.state,
            "jupyter_port": self.profile.jupyter.port,
        }
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
            )
            if show_token:
                data["token"] = record.token
        elif record is not None:
            data["stale"] = f"owner process {record.pid} is gone"
        if self.health is not None:
            data["health"] = self.health.to_dict()
        return data


def _status_of(profile: Profile, record: state.Record | None) -> RuntimeStatus:
    if record is None:
        return RuntimeStatus(profile, None, "down")
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
    for profile in profiles.profiles.values():
        row = _status_of(profile, records.get(profile.name))
        if check_health and row.state == "up" and row.record is not None:
            row.health = health.quick_check(row.record.port, row.record.token)
        if refresh and profile.gce is not None:
            row.live_status = _live_status(profile)
        rows.append(row)
    for name in sorted(set(records) - set(profiles.profiles)):
        problems.append(f"runtime '{name}' is recorded but its profile is not in {profiles.path}")
    return rows, problems


def _live_status(profile: Profile) -> str:
    try:
        from .providers.gce import live_status

        return str(live_status(profile))
    except CloudError as exc:
        return f"unknown ({exc.message})"


def _live_record(profiles: ProfileSet, name: str) -> tuple[Profile, state.Record]:
    profile = profiles.get(name)
    record = state.get(name)
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


def status(profiles: ProfileSet, name: str) -> RuntimeStatus:
    """Run the full health check now, through the runtime's forwarded port."""
    profile, record = _live_record(profiles, name)
    row = _status_of(profile, record)
    row.health = health.check(record.port, record.token)
    return row


def _is_cli_process(pid: int, name: str) -> bool:
    """Is the owner our CLI (foreground `up`, `run`, a supervisor), which tears down on
    SIGTERM? A script using `remote_runtime.api` may not."""
    argv = procs.cmdline(pid)
    ours = any("remote_runtime" in a or "remote-runtime" in a for a in argv)
    return ours and name in argv


def down(profiles: ProfileSet, name: str, progress: Callable[[str], None]) -> list[str]:
    """Tear a runtime down from any terminal; clean up after a dead owner."""
    profile = profiles.get(name)
    try:
        record = state.get(name)
    except StateError as exc:
        state.discard_corrupt(name)
        return [f"removed an unreadable state record ({exc.message})"]
    if record is None:
        raise NotRunningError(f"runtime '{name}' is not up")
    done: list[str] = []
    if record.alive and not _is_cli_process(record.pid, name):
        raise StateError(
            f"runtime '{name}' is held by process {record.pid}, which is not a "
            "remote-runtime command (a script using remote_runtime.api?)",
            hint="stop it in that program; its `with` block tears the runtime down",
        )
    if record.alive:
        progress(f"asking process {record.pid} to tear '{name}' down")
        done.append(_stop_owner(name, record.pid))
        if state.get(name) is None:
            return done
    else:
        done.append(f"owner process {record.pid} is gone (stale record)")
    done.extend(_clean_stale(profile, record, progress))
    state.remove(name)
    done.append("removed the state record")
    return done


def _stop_owner(name: str, pid: int) -> str:
    """Ask the owner to tear down and wait for it to end; say how it ended.

    First a stop request, which every OS can deliver (`stops`). An owner that does not
    take it (it is stuck, or predates stop requests) gets `procs.stop_pid`: SIGTERM on
    POSIX, which our CLI also tears down on; on Windows that is TerminateProcess, a kill,
    after which `down` stops the remote server itself.
    """
    stops.request(name, pid)
    try:
        if stops.wait_taken(name, TAKE_WAIT):
            if procs.wait_gone(pid, STOP_WAIT):
                return f"process {pid} tore the runtime down"
            procs.kill(pid)
            procs.wait_gone(pid, 5.0)
            return f"process {pid} did not finish its teardown within {STOP_WAIT:.0f}s; killed it"
    finally:
        stops.withdraw(name)
    if procs.stop_pid(pid, timeout=STOP_WAIT):
        return f"process {pid} did not take the stop request; terminated it"
    return f"process {pid} did not stop within {STOP_WAIT:.0f}s; killed it"


def _clean_stale(profile: Profile, record: state.Record,
                 progress: Callable[[str], None]) -> list[str]:
    """The owner died: stop the remote server now rather than at lease end."""
    if not record.endpoint:
        return ["no endpoint recorded; the remote server stops itself when its lease ends"]
    progress(f"owner process {record.pid} is gone; stopping the remote server directly")
    handle = ServerHandle(run_id=record.run_id, port=record.port, server_pid=0, monitor_pid=0,
                          log_path=record.remote_log, jupyter=[])
    try:
        with ssh.connect(ssh.Endpoint.from_dict(record.endpoint)) as session:
            reason = RemoteHost(session, profile.jupyter).stop(handle)
    except RemoteRuntimeError as exc:
        return [f"could not stop the remote server ({exc.message}); it stops itself within "
                f"{profile.jupyter.lease_seconds}s of its last lease renewal"]
    done = [f"remote server: {reason}"]
    if profile.gce is not None and profile.gce.stop_on_exit:
        messages: list[str] = []
        try:
            providers.for_profile(profile).close(messages.append)
        except RemoteRuntimeError as exc:
            messages.append(f"could not stop the VM: {exc.message}")
        done.extend(messages)
    return done


def down_all(profiles: ProfileSet, progress: Callable[[str], None]) -> dict[str, list[str]]:
    records, _problems = state.read_all()
    results: dict[str, list[str]] = {}
    for name in sorted(records):
        if name in profiles.profiles:
            results[name] = down(profiles, name, progress)
    return results


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
