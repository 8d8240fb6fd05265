"""Strict host-key checking against known_hosts files, as OpenSSH does it.

Pure file logic: it sees a server key
only through `get_name()` and `get_base64()`. A key that differs from a
recorded one is always refused, naming the file and line; an unknown host is
refused with its fingerprint unless the caller accepts new keys (then the key
is recorded, like OpenSSH's `StrictHostKeyChecking=accept-new`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import HostKeyError


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
    """Checks one server's key for host-key name `name` (`host`, `[host]:port` or an alias)."""

    def __init__(
        self,
        name: str,
        known_hosts: Sequence[Path],
        *,
        trusted: Sequence[tuple[str, str]] = (),
    ):
        self.name = name
        self.files = list(known_hosts)
        # Keys published out of band (GCE guest attributes): authoritative.
        self.trusted = list(trusted)
        self.known = [k for path in self.files for k in read_known_hosts(path, name)]

    @property
    def write_file(self) -> Path:
        """Where new keys are recorded: the first known_hosts file (the profile's)."""
        return self.files[0]

    def preferred_key_types(self, offered: Sequence[str]) -> tuple[str, ...]:
        """Put the key types we already know for this host first, as OpenSSH does,
        so a host with a recorded RSA key is not reported as 'unknown' for ed25519."""
        known = [k.key_type for k in self.known if k.marker is None]
        known += [t for t, _ in self.trusted]
        first = [t for t in offered
                 if t in known or (t.startswith("rsa-sha2") and "ssh-rsa" in known)]
        return tuple(first) + tuple(t for t in offered if t not in first)

    def verify(self, key: ServerKey, *, accept_new: bool) -> None:
        key_type, key_b64 = key.get_name(), key.get_base64()
        offered = f"{key_type} {fingerprint(key_b64)}"
        for entry in self.known:
            if entry.marker == "@revoked" and entry.key_b64 == key_b64:
                raise HostKeyError(
                    f"host key for {self.name} ({offered}) is marked revoked in "
                    f"{entry.path} line {entry.line}"
                )
        if self.trusted:
            if any(t == key_type and b == key_b64 for t, b in self.trusted):
                self._record(key_type, key_b64, replace_existing=True)
                return
            raise HostKeyError(
                f"host key for {self.name} ({offered}) does not match the host keys "
                "the VM published in its guest attributes",
                hint="this can mean someone is intercepting the connection; "
                "do not connect until you know why",
            )
        plain = [k for k in self.known if k.marker is None]
        if any(k.key_b64 == key_b64 for k in plain):
            return
        # OpenSSH compares against keys of the same algorithm; rsa-sha2-* signs with ssh-rsa keys.
        base_type = "ssh-rsa" if key_type.startswith("rsa-sha2") else key_type
        mismatched = [k for k in plain if k.key_type == base_type]
        if mismatched:
            entry = mismatched[0]
            raise HostKeyError(
                f"HOST KEY CHANGED for {self.name}: the server offered {offered}, "
                f"but {entry.path} line {entry.line} records a different key",
                hint=f"if the host was reinstalled, remove that line "
                f"(ssh-keygen -R '{self.name}' -f {entry.path}) and connect again; "
                "otherwise someone may be intercepting the connection",
            )
        if not accept_new:
            raise HostKeyError(
                f"unknown host key for {self.name}: {offered}",
                hint="check the fingerprint with the host's owner, then re-run with "
                f"--accept-new-host-key to record it in {self.write_file}",
            )
        self._record(key_type, key_b64, replace_existing=False)

    def _record(self, key_type: str, key_b64: str, *, replace_existing: bool) -> None:
        path = self.write_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
            entry = f"{self.name} {key_type} {key_b64}"
            if entry in lines:
                return
            if replace_existing:
                # gcloud's convention: one entry per alias, refreshed from guest attributes.
                lines = [ln for ln in lines if not (ln.split()[:1] == [self.name]
                                                     and ln.split()[1:2] == [key_type])]
            lines.append(entry)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o600)
            tmp.replace(path)
        except OSError as exc:
            raise HostKeyError(f"{path}: cannot record host key: {exc.strerror}") from None
