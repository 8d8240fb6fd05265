"""State records (remote_runtime/state.py) as units: no sandbox, real files and processes.

Every test runs in its own XDG state dir (conftest's autouse `isolated`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest
from support.env import REPO_ROOT, Isolated

from remote_runtime import procs, state
from remote_runtime.errors import ExitCode, StateError


def make_record(name: str = "sb", pid: int | None = None, **changes: object) -> state.Record:
    record = state.Record(
        name=name,
        kind="ssh",
        pid=os.getpid() if pid is None else pid,
        port=19999,
        token="t0ken" * 8,
        run_id=f"{name}-0123456789ab",
        target="user@host:22",
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def runtimes_dir(isolated: Isolated) -> Path:
    return isolated.state / "remote-runtime" / "runtimes"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process we own (the 'other owner' of a record); killed after the test."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)


# --- writing ------------------------------------------------------------------------------


def test_write_is_private_versioned_and_leaves_no_temp_file(isolated: Isolated) -> None:
    state.write(make_record())
    path = runtimes_dir(isolated) / "sb.json"
    assert mode(path) == 0o600, "a record holds the token: owner-only"
    assert mode(runtimes_dir(isolated)) == 0o700
    data = json.loads(path.read_text())
    assert data["version"] == state.VERSION
    assert data["name"] == "sb" and data["pid"] == os.getpid()
    assert [p.name for p in runtimes_dir(isolated).iterdir() if p.name != ".lock"] == ["sb.json"]
    assert state.get("sb") == make_record(since=data["since"])


def test_write_keeps_0600_even_with_a_permissive_umask(isolated: Isolated) -> None:
    old = os.umask(0)
    try:
        state.write(make_record())
        state.update("sb", reconnects=3)
    finally:
        os.umask(old)
    path = runtimes_dir(isolated) / "sb.json"
    assert mode(path) == 0o600
    assert mode(runtimes_dir(isolated)) == 0o700


def test_update_changes_fields_and_keeps_the_rest(isolated: Isolated) -> None:
    state.write(make_record())
    state.update("sb", reconnects=2)
    record = state.get("sb")
    assert record is not None
    assert record.reconnects == 2 and record.port == 19999
    assert mode(runtimes_dir(isolated) / "sb.json") == 0o600
    state.update("missing", reconnects=1)  # no record: nothing is created
    assert state.get("missing") is None


def test_readers_never_see_a_partial_record(isolated: Isolated) -> None:
    """Atomic replace: a reader racing many rewrites only ever sees whole records."""
    state.write(make_record())
    path = runtimes_dir(isolated) / "sb.json"
    stop = threading.Event()
    seen: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                text = path.read_text()
            except FileNotFoundError:
                bad.append("file missing between writes")
                continue
            try:
                seen.append(json.loads(text)["reconnects"])
            except ValueError as exc:
                bad.append(f"{exc}: {text[:80]!r}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            # A long field makes a torn (non-atomic) write very likely to be observed.
            state.write(make_record(reconnects=i, remote_log="x" * (20_000 + i)))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not bad, bad[:3]
    assert seen, "the reader never ran"
    assert seen == sorted(seen), "a reader saw records out of order"


def test_failed_write_keeps_the_previous_record(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.write(make_record(reconnects=1))

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(StateError, match="No space left"):
        patch.setattr(os, "fsync", broken_fsync)
        state.write(make_record(reconnects=2))
    record = state.get("sb")
    assert record is not None and record.reconnects == 1
    records, problems = state.read_all()
    assert list(records) == ["sb"] and problems == []


# --- claim --------------------------------------------------------------------------------


def test_claim_refuses_a_live_duplicate(
    isolated: Isolated, live_process: subprocess.Popen[bytes]
) -> None:
    state.claim(make_record(pid=live_process.pid, port=19001))
    with pytest.raises(StateError) as caught:
        state.claim(make_record(port=19002))  # our own pid: a different, live owner
    error = caught.value
    assert error.exit_code == ExitCode.STATE
    assert "already up" in error.message
    assert str(live_process.pid) in error.message and "19001" in error.message
    assert error.hint and "remote-runtime down sb" in error.hint
    record = state.get("sb")
    assert record is not None and record.pid == live_process.pid, "the live record was replaced"


def test_claim_replaces_a_stale_record(isolated: Isolated) -> None:
    state.write(make_record(pid=dead_pid(), port=19001))
    state.claim(make_record(port=19002))
    record = state.get("sb")
    assert record is not None and record.pid == os.getpid() and record.port == 19002


def test_claim_by_the_same_owner_rewrites(isolated: Isolated) -> None:
    state.claim(make_record(port=19001))
    state.claim(make_record(port=19002))
    record = state.get("sb")
    assert record is not None and record.port == 19002


def test_claim_replaces_an_unreadable_record(isolated: Isolated) -> None:
    path = runtimes_dir(isolated) / "sb.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    state.claim(make_record())
    assert state.get("sb") is not None


def _claim_in_child(start: EventType, done: EventType, results: Queue[str]) -> None:
    start.wait(30)
    try:
        state.claim(make_record(pid=os.getpid()))
        results.put("won")
    except StateError:
        results.put("refused")
    done.wait(60)  # stay alive (a live owner) until every child has tried


def test_concurrent_claims_have_one_winner(isolated: Isolated) -> None:
    """The lock makes check-then-write atomic across processes."""
    ctx = multiprocessing.get_context("fork")
    start, done = ctx.Event(), ctx.Event()
    results: Queue[str] = ctx.Queue()
    children = [ctx.Process(target=_claim_in_child, args=(start, done, results))
                for _ in range(6)]
    for child in children:
        child.start()
    try:
        start.set()
        outcomes = [results.get(timeout=60) for _ in children]
    finally:
        done.set()
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
                child.join(timeout=10)
    assert sorted(outcomes) == ["refused"] * 5 + ["won"], outcomes
    record = state.get("sb")
    assert record is not None and record.pid in {c.pid for c in children}


# --- liveness -----------------------------------------------------------------------------


def test_stale_detection_for_a_dead_pid(isolated: Isolated) -> None:
    record = make_record(pid=dead_pid())
    assert not record.alive
    assert make_record().alive
    assert not make_record(pid=0).alive
    assert not make_record(pid=-1).alive


def test_a_live_owner_stays_alive_across_a_clock_step(
    live_process: subprocess.Popen[bytes],
) -> None:
    """A record written an hour ago by the wall clock, for an owner that started just
    before it: what every live runtime looks like after the clock jumps an hour ahead."""
    started = procs.started_since_boot(live_process.pid)
    assert started is not None
    record = make_record(pid=live_process.pid, since=time.time() - 3600, owner_started=started)
    assert record.alive
    # The same record without the owner's boot-relative start used to look stale.
    assert not make_record(pid=live_process.pid, since=time.time() - 3600).alive


def test_a_recycled_pid_is_not_the_owner(live_process: subprocess.Popen[bytes]) -> None:
    """The PID now belongs to another process, started later than the owner."""
    mine = procs.started_since_boot(os.getpid())
    assert mine is not None
    record = make_record(pid=live_process.pid, owner_started=mine - 60)
    assert not record.alive


def test_start_since_boot_is_stable_and_unknown_for_the_dead() -> None:
    first, again = procs.started_since_boot(os.getpid()), procs.started_since_boot(os.getpid())
    assert first is not None and first == again
    assert procs.started_since_boot(dead_pid()) is None


def test_a_zombie_owner_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # exited but not reaped: a zombie
            status = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if status == "Z":
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the child never became a zombie")
        assert not procs.alive(proc.pid)
    finally:
        proc.wait(timeout=10)


# --- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("garbage{{", "unreadable state record"),
        ("", "unreadable state record"),
        ('["a list"]', "unknown version"),
        ('{"version": 99, "name": "bad"}', "unknown version"),
        ('{"name": "bad"}', "unknown version"),
        ('{"version": 1, "name": "bad"}', "malformed state record"),
        ('{"version": 1, "name": "bad", "kind": "ssh", "pid": 1, "port": 1, "token": "t",'
         ' "run_id": "r", "target": "x", "surprise": true}', "malformed state record"),
    ],
)
def test_read_all_reports_bad_files_and_keeps_good_ones(
    isolated: Isolated, content: str, expect: str
) -> None:
    state.write(make_record("good"))
    bad = runtimes_dir(isolated) / "bad.json"
    bad.write_text(content)
    records, problems = state.read_all()
    assert list(records) == ["good"]
    assert len(problems) == 1
    assert str(bad) in problems[0] and expect in problems[0], problems
    with pytest.raises(StateError) as caught:
        state.get("bad")
    assert caught.value.exit_code == ExitCode.STATE
    assert caught.value.hint and "remote-runtime down bad" in caught.value.hint


def test_read_all_ignores_lock_and_temp_files(isolated: Isolated) -> None:
    state.write(make_record())
    directory = runtimes_dir(isolated)
    (directory / ".sb.json.1234.tmp").write_text("{half")
    with state.locked():
        pass
    records, problems = state.read_all()
    assert list(records) == ["sb"] and problems == []


def test_read_all_of_an_empty_state_dir(isolated: Isolated) -> None:
    assert state.read_all() == ({}, [])
    assert state.get("sb") is None


def test_discard_corrupt_removes_only_an_unreadable_record(isolated: Isolated) -> None:
    state.write(make_record("good"))
    (runtimes_dir(isolated) / "bad.json").write_text("garbage")
    assert state.discard_corrupt("good") is False
    assert state.get("good") is not None
    assert state.discard_corrupt("bad") is True
    assert not (runtimes_dir(isolated) / "bad.json").exists()
    assert state.discard_corrupt("bad") is False  # idempotent
    assert state.read_all()[1] == []


# --- remove -------------------------------------------------------------------------------


def test_remove_with_pid_only_removes_its_own_record(
    isolated: Isolated, live_process: subprocess.Popen[bytes]
) -> None:
    state.write(make_record(pid=live_process.pid))
    state.remove("sb", pid=os.getpid())  # someone else's record: left alone
    record = state.get("sb")
    assert record is not None and record.pid == live_process.pid
    state.remove("sb", pid=live_process.pid)
    assert state.get("sb") is None


def test_remove_without_pid_and_of_a_missing_record(isolated: Isolated) -> None:
    state.write(make_record(pid=12345678))
    state.remove("sb")
    assert state.get("sb") is None
    state.remove("sb")  # nothing there: no error
    state.remove("sb", pid=os.getpid())


def test_remove_with_pid_of_an_unreadable_record_removes_it(isolated: Isolated) -> None:
    path = runtimes_dir(isolated) / "sb.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("garbage")
    state.remove("sb", pid=os.getpid())
    assert not path.exists()


def test_failed_write_leaves_no_temp_file(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(StateError, match="No space left"):
        patch.setattr(os, "fsync", broken_fsync)
        state.write(make_record())
    assert [p.name for p in runtimes_dir(isolated).iterdir() if p.name != ".lock"] == []


# --- portability ----------------------------------------------------------------------------


def test_replace_retries_while_windows_holds_the_target_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows refuses a rename over a file another process has open (a `list` reading it)."""
    target, tmp = tmp_path / "sb.json", tmp_path / ".sb.json.tmp"
    target.write_text("old")
    tmp.write_text("new")
    real, refusals = Path.replace, [2]

    def replace(self: Path, other: Path) -> Path:
        if refusals[0]:
            refusals[0] -= 1
            raise PermissionError(13, "Access is denied")
        return real(self, other)

    monkeypatch.setattr(Path, "replace", replace)
    state._replace(tmp, target, windows=True)
    assert target.read_text() == "new" and not tmp.exists()
    tmp.write_text("newer")
    refusals[0] = 1
    with pytest.raises(PermissionError):  # elsewhere a refusal is a real error
        state._replace(tmp, target, windows=False)


def test_a_held_lock_times_out_with_a_state_error(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "LOCK_TIMEOUT", 0.3)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom remote_runtime import state\n"
         "with state.locked():\n    print('held', flush=True); time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StateError, match="still locked") as err, state.locked():
            pass
        assert err.value.exit_code == ExitCode.STATE
    finally:
        holder.kill()
        holder.wait()
    with state.locked():  # released with its holder
        pass
