"""Records of running runtimes, shared by every process of the user.

One JSON file per runtime under the state dir, versioned, written atomically
(temp file + rename) under a lock, mode 0600 (a record holds the token).
A record whose owning process is gone is reported as stale, never trusted.
The lock is `filelock`'s (flock on POSIX, LockFileEx on Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock

from . import paths, procs
from .errors import StateError

VERSION = 1
LOCK_TIMEOUT = 30.0  # every holder only reads or writes a few small files


@dataclass
class Record:
    name: str
    kind: str
    pid: int  # the local process that owns the tunnel (foreground `up` or supervisor)
    port: int
    token: str
    run_id: str
    target: str
    since: float = field(default_factory=time.time)
    profiles_path: str = ""
    detached: bool = False
    log_path: str = ""  # the supervisor's log, for detached runtimes
    remote_log: str = ""
    reconnects: int = 0
    endpoint: dict[str, Any] = field(default_factory=dict)  # providers.Endpoint.to_dict()
    phase: str = "up"  # "starting" until the health check passes, then "up" (or "preempted")
    profile: str = ""  # the profile it was made from, when named PROFILE-SUFFIX ({run})
    ended: str = ""  # why a runtime that is no longer up ended (e.g. its VM was preempted)
    stack: str = "classic"  # the server stack, and the Colab routes it serves
    routes: list[str] = field(default_factory=lambda: ["websocket", "cors"])
    # When the owner started, in seconds since boot: identifies it across clock steps.
    owner_started: float | None = None
    version: int = VERSION

    @property
    def url(self) -> str:
        from .jupyter import colab_url

        return colab_url(self.port, self.token)

    @property
    def alive(self) -> bool:
        """The owner still runs: the PID is alive AND is the process that wrote the
        record (a recycled PID belongs to a younger process). Compared in time since
        boot, so a step of the wall clock never makes a live owner look stale."""
        if not procs.alive(self.pid):
            return False
        if self.owner_started is not None:
            started = procs.started_since_boot(self.pid)
            return started is None or abs(started - self.owner_started) < 1.0
        # A record from before owner_started: the PID must be older than the record.
        wall = procs.start_time(self.pid)
        return wall is None or wall <= self.since + 2.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtimes_dir() -> Path:
    """Where the records (and `stops` requests) live."""
    return paths.ensure_private_dir(paths.state_dir() / "runtimes")


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialize state changes across processes.

    Raises:
        StateError: the lock is still held after LOCK_TIMEOUT, or the state directory
            cannot be written (full disk, read-only).
    """
    try:
        lock_path = runtimes_dir() / ".lock"
        lock = filelock.FileLock(lock_path, timeout=LOCK_TIMEOUT, mode=0o600)
        lock.acquire()
    except filelock.Timeout:  # (a TimeoutError, so an OSError: caught first)
        raise StateError(f"{lock_path}: still locked after {LOCK_TIMEOUT:.0f}s",
                         hint="another remote-runtime command holds it; try again") from None
    except OSError as exc:
        raise _unwritable(exc) from None
    try:
        yield
    finally:
        lock.release()


def _path(name: str) -> Path:
    return runtimes_dir() / f"{name}.json"


def _unwritable(exc: OSError) -> StateError:
    return StateError(f"cannot write the state directory {paths.state_dir()}: "
                      f"{exc.strerror or exc}",
                      hint="free some disk space, or make the directory writable")


def write(record: Record) -> None:
    """Write `record` atomically (a temp file renamed over the old one).

    Raises:
        StateError: the state directory cannot be written (full disk, read-only).
    """
    data = json.dumps(record.to_dict(), indent=1, sort_keys=True)
    try:
        write_private(_path(record.name), data)
    except OSError as exc:
        raise _unwritable(exc) from None


def write_private(path: Path, data: str) -> None:
    """Write `data` to `path` atomically (temp file + rename), readable only by the user."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # O_BINARY: Windows would open the descriptor in text mode (CRLF doubled).
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _replace(tmp: Path, path: Path, *, windows: bool = sys.platform == "win32") -> None:
    """Rename over `path`. Windows refuses while another process has `path` open (a
    `list` reading it, which takes no lock): retry for a moment there."""
    attempts = 20 if windows else 1
    for attempt in range(attempts):
        try:
            tmp.replace(path)
            return
        except PermissionError:
            if attempt + 1 == attempts:
                raise
            time.sleep(0.05)


def claim(record: Record) -> None:
    """Write a new record unless a live runtime already holds that name."""
    with locked():
        existing = _read(_path(record.name))
        if isinstance(existing, Record) and existing.alive and existing.pid != record.pid:
            where = f"port {existing.port}" if existing.port else "starting"
            raise StateError(
                f"runtime '{record.name}' is already up (pid {existing.pid}, {where})",
                hint=f"use it, or stop it with 'remote-runtime down {record.name}'",
            )
        write(record)


def update(name: str, **changes: Any) -> None:
    with locked():
        record = _read(_path(name))
        if isinstance(record, Record):
            for key, value in changes.items():
                setattr(record, key, value)
            write(record)


def remove(name: str, *, pid: int | None = None) -> None:
    """Delete a record (only if still owned by `pid`, when given)."""
    with locked():
        path = _path(name)
        record = _read(path)
        if pid is not None and isinstance(record, Record) and record.pid != pid:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read(path: Path) -> Record | str | None:
    """A record, a problem description, or None if there is no file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable state record ({exc})"
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return f"{path}: state record of an unknown version"
    try:
        return Record(**data)
    except TypeError as exc:
        return f"{path}: malformed state record ({exc})"


def get(name: str) -> Record | None:
    record = _read(_path(name))
    if isinstance(record, str):
        raise StateError(record, hint=f"remove it with 'remote-runtime down {name}'")
    return record


def read_all() -> tuple[dict[str, Record], list[str]]:
    """Every record by name, and a line per unreadable file (never fatal)."""
    records: dict[str, Record] = {}
    problems: list[str] = []
    for path in sorted(runtimes_dir().glob("*.json")):
        record = _read(path)
        if isinstance(record, Record):
            records[record.name] = record
        elif isinstance(record, str):
            problems.append(record)
    return records, problems


def discard_corrupt(name: str) -> bool:
    """Remove an unreadable record file; True if there was one."""
    path = _path(name)
    with locked():
        if isinstance(_read(path), str):
            path.unlink()
            return True
    return False
