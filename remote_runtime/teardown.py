"""`down`: tear runtimes down from any terminal. Returns what was done, as lines.

The owner (a foreground `up`, `run`, `exec` or a supervisor) is asked to tear down
through a stop request (`stops`, every OS), then signalled; a record whose owner is
gone is cleaned here: the remote server stopped over a new connection, the VM stopped
or deleted as the profile says. `down --all` also deletes the VMs this machine created
for ephemeral profiles that no runtime holds any more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from . import procs, providers, ssh, state, stops
from .control import runtimes_of
from .errors import CloudError, NotRunningError, ProfileError, RemoteRuntimeError, StateError
from .profiles import Profile, ProfileSet
from .remote import RemoteHost, ServerHandle

STOP_WAIT = 90.0  # a supervisor stops the server (<= 40 s) and closes everything
TAKE_WAIT = 10.0  # an owner's watcher takes a stop request within a poll (0.25 s)


def _is_cli_process(pid: int, profile: Profile) -> bool:
    """Is the owner our CLI (foreground `up`, `run`, `exec`, a supervisor), which tears down
    on SIGTERM? A script using `remote_runtime.api` may not. (`up ci` of a {run} profile
    holds the runtime ci-SUFFIX.)"""
    argv = procs.cmdline(pid)
    ours = any("remote_runtime" in a or "remote-runtime" in a for a in argv)
    return ours and (profile.name in argv or profile.profile_name in argv)


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
    owner_runs = record.alive and record.phase != "preempted"  # a preempted one has ended
    if owner_runs and not _is_cli_process(record.pid, profile):
        raise StateError(
            f"runtime '{name}' is held by process {record.pid}, which is not a "
            "remote-runtime command (a script using remote_runtime.api?)",
            hint="stop it in that program; its `with` block tears the runtime down",
        )
    if owner_runs:
        progress(f"asking process {record.pid} to tear '{name}' down")
        done.append(_stop_owner(name, record.pid))
        if state.get(name) is None:
            return done
    elif record.phase == "preempted":
        done.append(record.ended or "its Spot VM was preempted")
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
    """The owner died: stop the remote server now rather than at lease end, then stop or
    delete the VM as the profile says (even when the server could not be reached)."""
    done = _stop_server_directly(profile, record, progress)
    gce = profile.gce
    if gce is not None and (gce.stop_on_exit or gce.delete_on_exit):
        messages: list[str] = []
        try:
            providers.for_profile(profile).close(messages.append)
        except RemoteRuntimeError as exc:
            verb = "delete" if gce.delete_on_exit else "stop"
            messages.append(f"could not {verb} the VM: {exc.message}")
        done.extend(messages)
    return done


def _stop_server_directly(profile: Profile, record: state.Record,
                          progress: Callable[[str], None]) -> list[str]:
    if record.phase == "preempted":
        return []
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
    return [f"remote server: {reason}"]


def down_named(profiles: ProfileSet, name: str,
               progress: Callable[[str], None]) -> dict[str, list[str]]:
    """`down NAME`: the runtime, or every runtime made from a {run} profile."""
    profile = profiles.get(name)
    if not profile.run_template:
        return {name: down(profiles, name, progress)}
    made = runtimes_of(profile)
    if not made:
        raise NotRunningError(f"no runtime of profile '{name}' is up")
    return {record.name: down(profiles, record.name, progress) for record in made}


def down_all(profiles: ProfileSet,
             progress: Callable[[str], None]) -> tuple[dict[str, list[str]], list[str]]:
    """Every recorded runtime down, then the VMs this machine created for ephemeral
    (delete_on_exit) profiles that are still there; returns results and warnings."""
    records, _problems = state.read_all()
    results: dict[str, list[str]] = {}
    for name in sorted(records):
        try:
            profiles.get(name)
        except ProfileError:
            continue
        results[name] = down(profiles, name, progress)
    warnings: list[str] = []
    for profile in profiles.profiles.values():
        gce = profile.gce
        if gce is not None and gce.create is not None and (
                gce.delete_on_exit or profile.run_template):
            _sweep(profile, results, warnings, progress)
    return results, warnings


def _sweep(profile: Profile, results: dict[str, list[str]], warnings: list[str],
           progress: Callable[[str], None]) -> None:
    """Delete the VMs this machine created for `profile` that no runtime holds any more."""
    from .providers.gce import leftovers

    try:
        names = leftovers(profile)
    except CloudError as exc:
        warnings.append(f"profile '{profile.name}': could not look for VMs left by earlier "
                        f"runs ({exc.message})")
        return
    live, _problems = state.read_all()
    held = {str(r.endpoint.get("extra", {}).get("instance", "")) for r in live.values()
            if r.alive and r.phase != "preempted"}
    for name in names:
        if name in held:
            continue
        assert profile.gce is not None
        vm = dataclasses.replace(profile, gce=dataclasses.replace(
            profile.gce, instance=name, delete_on_exit=True, stop_on_exit=False))
        progress(f"instance {name} was left by an earlier run of '{profile.name}'")
        lines: list[str] = []
        try:
            providers.for_profile(vm).close(lines.append)
        except RemoteRuntimeError as exc:
            lines.append(f"could not delete it: {exc.message}")
        results[name] = lines
