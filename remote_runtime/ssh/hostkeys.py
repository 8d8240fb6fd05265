"""Strict host-key checking against known_hosts files, as OpenSSH does it.

Pure file logic: it sees a server key only through `get_name()` and
`get_base64()`. A key that differs from a recorded one is always refused,
naming the file and line. An unknown key follows StrictHostKeyChecking: `yes`
refuses it with its fingerprint, `ask` asks on a terminal, `accept-new` records
it, `no` records it with a warning. New keys are kept as OpenSSH keeps them:
one line appended (hashed with HashKnownHosts) to the first UserKnownHostsFile,
only when that is a regular file (a symlink's target too), never by replacing
the file; /dev/null and `none` record nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import HostKeyError

try:
    import fcntl
except ImportError:  # Windows: appends are still one write each
    fcntl = None  # type: ignore[assignment]

# Asks a yes/no question on the user's terminal; returns the answer typed.
Ask = Callable[[str], str]


class ServerKey(Protocol):
    def get_name(self) -> str: ...

    def get_base64(self) -> str: ...


@dataclass(frozen=True)
class KnownKey:
    path: Path
    line: int
    key_type: str
    key_b64: str
    marker: str | None  # "@revoked", "@cert-authority" or None


@dataclass(frozen=True)
class Verdict:
    """What known_hosts (or a VM's published keys) say of one server key."""

    status: str  # revoked, trusted, mismatch, known, changed, unknown
    entry: KnownKey | None = None  # the known_hosts line it was judged by, if any


def fingerprint(key_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a base64 public key blob."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _matches_hashed(entry: str, name: str) -> bool:
    # |1|base64(salt)|base64(hmac-sha1(salt, name))
    try:
        _, _, salt_b64, hash_b64 = entry.split("|", 3)
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(hash_b64)
    except (ValueError, binascii.Error):
        return False
    actual = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(actual, expected)


def _wildcard_match(pattern: str, name: str) -> bool:
    """OpenSSH's match_pattern: only `*` and `?` are special. Not fnmatch, whose
    `[...]` classes would make `[host]:2222` entries never match their host."""
    regex = "".join(
        ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern
    )
    return re.fullmatch(regex, name, re.DOTALL) is not None


def host_matches(patterns: str, name: str) -> bool:
    """Does a known_hosts host field (comma list, wildcards, !negations, hashes) match?"""
    matched = False
    for pattern in patterns.split(","):
        if pattern.startswith("|1|"):
            if _matches_hashed(pattern, name):
                matched = True
            continue
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!")
        if _wildcard_match(glob.lower(), name.lower()):
            if negated:
                return False
            matched = True
    return matched


def read_known_hosts(path: Path, name: str) -> list[KnownKey]:
    """Entries of `path` that apply to host `name`, with their line numbers."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HostKeyError(f"{path}: cannot read known_hosts file: {exc.strerror}") from None
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3 or not host_matches(fields[0], name):
            continue
        found.append(KnownKey(path, number, fields[1], fields[2], marker))
    return found


class HostKeyChecker:
    """Checks one server's key for host-key name `name` (`host`, `[host]:port` or an alias).

    `known_hosts` are the user files (UserKnownHostsFile, the profile's first);
    `global_known_hosts` are read too (GlobalKnownHostsFile); new keys go to
    `record_file` (default: the first user file; None records nothing).
    """

    def __init__(
        self,
        name: str,
        known_hosts: Sequence[Path],
        *,
        trusted: Sequence[tuple[str, str]] = (),
        global_known_hosts: Sequence[Path] = (),
        record_file: Path | bool | None = True,
        hash_names: bool = False,
    ):
        self.name = name
        self.files = list(known_hosts)
        self.global_files = list(global_known_hosts)
        # Keys published out of band (GCE guest attributes): authoritative.
        self.trusted = list(trusted)
        self.hash_names = hash_names
        if record_file is True:
            self.record_file: Path | None = self.files[0] if self.files else None
        else:
            self.record_file = record_file or None
        self.known = [k for path in self.files for k in read_known_hosts(path, name)]
        for path in self.global_files:
            with contextlib.suppress(HostKeyError):  # an unreadable system file: as OpenSSH
                self.known += read_known_hosts(path, name)

    @property
    def write_file(self) -> Path | None:
        """Where new keys are recorded (None: nowhere)."""
        return self.record_file

    def preferred_key_types(self, offered: Sequence[str]) -> tuple[str, ...]:
        """Put the key types we already know for this host first, as OpenSSH does,
        so a host with a recorded RSA key is not reported as 'unknown' for ed25519."""
        known = [k.key_type for k in self.known if k.marker is None]
        known += [t for t, _ in self.trusted]
        first = [t for t in offered
                 if t in known or (t.startswith("rsa-sha2") and "ssh-rsa" in known)]
        return tuple(first) + tuple(t for t in offered if t not in first)

    def classify(self, key_type: str, key_b64: str) -> Verdict:
        """What the known keys say of a server key, without asking or recording anything:
        "revoked", "trusted" or "mismatch" (against published keys), "known", "changed"
        (a different key of its type is recorded) or "unknown"."""
        for entry in self.known:
            if entry.marker == "@revoked" and entry.key_b64 == key_b64:
                return Verdict("revoked", entry)
        if self.trusted:
            matched = any(t == key_type and b == key_b64 for t, b in self.trusted)
            return Verdict("trusted" if matched else "mismatch")
        plain = [k for k in self.known if k.marker is None]
        same = next((k for k in plain if k.key_b64 == key_b64), None)
        if same is not None:
            return Verdict("known", same)
        # OpenSSH compares against keys of the same algorithm; rsa-sha2-* signs with ssh-rsa keys.
        base_type = "ssh-rsa" if key_type.startswith("rsa-sha2") else key_type
        mismatched = [k for k in plain if k.key_type == base_type]
        return Verdict("changed", mismatched[0]) if mismatched else Verdict("unknown")

    def refusal(self, verdict: Verdict, key_type: str, key_b64: str) -> HostKeyError | None:
        """The error a revoked, mismatching or changed key is refused with (None otherwise)."""
        offered = f"{key_type} {fingerprint(key_b64)}"
        entry = verdict.entry
        if verdict.status == "revoked" and entry is not None:
            return HostKeyError(
                f"host key for {self.name} ({offered}) is marked revoked in "
                f"{entry.path} line {entry.line}"
            )
        if verdict.status == "mismatch":
            return HostKeyError(
                f"host key for {self.name} ({offered}) does not match the host keys "
                "the VM published in its guest attributes",
                hint="this can mean someone is intercepting the connection; "
                "do not connect until you know why",
            )
        if verdict.status == "changed" and entry is not None:
            return HostKeyError(
                f"HOST KEY CHANGED for {self.name}: the server offered {offered}, "
                f"but {entry.path} line {entry.line} records a different key",
                hint=f"if the host was reinstalled, remove that line "
                f"(ssh-keygen -R '{self.name}' -f {entry.path}) and connect again; "
                "otherwise someone may be intercepting the connection",
            )
        return None

    def verify(self, key: ServerKey, *, accept_new: bool = False, strict: str = "yes",
               ask: Ask | None = None) -> str | None:
        """Accept `key` or raise HostKeyError; returns a note when a key was recorded.

        `strict` is StrictHostKeyChecking (yes, ask, accept-new, no); `accept_new`
        (the --accept-new-host-key flag) turns yes and ask into accept-new.
        """
        key_type, key_b64 = key.get_name(), key.get_base64()
        offered = f"{key_type} {fingerprint(key_b64)}"
        verdict = self.classify(key_type, key_b64)
        refused = self.refusal(verdict, key_type, key_b64)
        if refused is not None:
            raise refused
        if verdict.status == "trusted":
            self._record(key_type, key_b64, replace_existing=True)
            return None
        if verdict.status == "known":
            return None
        mode = strict if strict in ("yes", "ask", "accept-new", "no") else "ask"
        if accept_new and mode in ("yes", "ask"):
            mode = "accept-new"
        if mode == "ask" and ask is not None:
            answer = ask(
                f"The authenticity of host '{self.name}' can't be established.\n"
                f"{_key_label(key_type)} key fingerprint is {fingerprint(key_b64)}.\n"
                "Are you sure you want to continue connecting (yes/no/[fingerprint])? ")
            answer = answer.strip()
            if answer.lower() == "yes" or answer == fingerprint(key_b64):
                mode = "accept-new"
            else:
                raise HostKeyError(f"host key for {self.name} not accepted ({offered})")
        if mode in ("yes", "ask"):
            where = self.write_file or "known_hosts"
            raise HostKeyError(
                f"unknown host key for {self.name}: {offered}",
                hint="check the fingerprint with the host's owner, then re-run with "
                f"--accept-new-host-key to record it in {where}",
            )
        note = self._record(key_type, key_b64, replace_existing=False)
        if mode == "no":
            warning = (f"warning: StrictHostKeyChecking no: accepted the unknown host key of "
                       f"{self.name} ({offered}) without checking it")
            return f"{warning}; {note}" if note else warning
        return note

    def _line(self, key_type: str, key_b64: str) -> str:
        name = hash_host_name(self.name) if self.hash_names else self.name
        return f"{name} {key_type} {key_b64}"

    def _record(self, key_type: str, key_b64: str, *, replace_existing: bool) -> str | None:
        """Append the key to the record file; say what was done (or why not)."""
        path = self.record_file
        if path is None:
            return f"the host key of {self.name} was not recorded (UserKnownHostsFile none)"
        if replace_existing:
            # gcloud's convention: one entry per alias and type, refreshed from guest attributes.
            return self._rewrite_trusted(path, key_type, key_b64)
        return append_known_host(path, self._line(key_type, key_b64), self.name, key_b64)

    def _rewrite_trusted(self, path: Path, key_type: str, key_b64: str) -> str | None:
        entry = f"{self.name} {key_type} {key_b64}"
        try:
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        except OSError as exc:
            return f"warning: cannot read {path}: {exc.strerror}"
        if entry in lines:
            return None
        stale = [ln for ln in lines
                 if ln.split()[:1] == [self.name] and ln.split()[1:2] == [key_type]]
        if not stale:
            return append_known_host(path, entry, self.name, key_b64)
        kept = [ln for ln in lines if ln not in stale] + [entry]
        return rewrite_in_place(path, "\n".join(kept) + "\n")


def _key_label(key_type: str) -> str:
    for prefix, label in (("ssh-ed25519", "ED25519"), ("ecdsa", "ECDSA"), ("ssh-rsa", "RSA"),
                          ("rsa-sha2", "RSA"), ("ssh-dss", "DSA")):
        if key_type.startswith(prefix):
            return label
    return key_type


def hash_host_name(name: str) -> str:
    """OpenSSH's HashKnownHosts form: |1|base64(salt)|base64(HMAC-SHA1(salt, name))."""
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _writable_regular(path: Path) -> str | None:
    """None if `path` (followed through symlinks) is a regular file or absent; else why not."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISREG(info.st_mode):
        return None
    kind = "a directory" if stat.S_ISDIR(info.st_mode) else (
        "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
        else "not a regular file")
    return kind


def append_known_host(  # noqa: PLR0911 - each way of not writing says why
        path: Path, line: str, name: str, key_b64: str) -> str | None:
    """Append one known_hosts line as OpenSSH does: O_APPEND, one write, never a new inode.

    A path that is not a regular file (/dev/null, a device, a FIFO) records nothing.
    Concurrent writers each add their line whole; a writer that finds the key
    already recorded for `name` (under an exclusive lock) adds nothing.
    """
    not_regular = _writable_regular(path)
    if not_regular is not None:
        if path == Path(os.devnull) or not_regular == "a device":
            return None  # /dev/null: "record nothing", as the user asked
        return f"warning: the host key of {name} was not recorded: {path} is {not_regular}"
    try:
        with contextlib.suppress(FileExistsError):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_NONBLOCK: a FIFO swapped in after the check must not hang us (fstat below).
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        return f"warning: the host key of {name} was not recorded in {path}: {exc.strerror}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        if any(k.key_b64 == key_b64 and k.marker is None for k in read_known_hosts(path, name)):
            return None
        size = os.fstat(fd).st_size
        prefix = ""
        if size:
            with path.open("rb") as handle:
                handle.seek(size - 1)
                prefix = "" if handle.read(1) == b"\n" else "\n"
        os.write(fd, f"{prefix}{line}\n".encode())
    except OSError as exc:
        return f"warning: the host key of {name} was not recorded in {path}: {exc.strerror}"
    finally:
        os.close(fd)  # also releases the lock
    return f"recorded the host key of {name} in {path}"


def rewrite_in_place(path: Path, text: str) -> str | None:
    """Replace a regular file's content without replacing the file (symlinks, owner kept)."""
    not_regular = _writable_regular(path)
    if not_regular is not None:
        return None
    try:
        with path.open("r+", encoding="utf-8") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            handle.seek(0)
            handle.write(text)
            handle.truncate()
    except OSError as exc:
        return f"warning: cannot update {path}: {exc.strerror}"
    return None
