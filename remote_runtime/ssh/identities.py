"""The keys a login offers, in the order OpenSSH offers them (sshconnect2.c pubkey_prepare).

1. certificates named by CertificateFile; 2. agent keys that are also listed
as IdentityFile (the agent's copy signs, with IdentitiesOnly too); 3. other
agent keys, unless IdentitiesOnly; 4. listed keys the agent does not hold (and
their `-cert.pub`). One change to OpenSSH's order: the profile's own key goes
first, so a full agent cannot exhaust the server's MaxAuthTries before it.

Public halves are read without decrypting anything (`.pub` beside the key, or
the public section of an OpenSSH-format key), so an IdentityFile that names a
`.pub` file (1Password's pattern) selects the agent's copy of that key.
Private keys are loaded only when their turn comes; a passphrase is asked
through the prompter, and a decrypted key is kept for this process (a detached
supervisor reconnects without asking again).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.agent import AgentKey, AgentSSH
from paramiko.pkey import PublicBlob

from ..errors import AuthenticationError, SSHError
from .prompts import Prompter

SK_PREFIX = "sk-"
CERT_SUFFIX = "-cert-v01@openssh.com"
AGENT_TIMEOUT = 10.0


@dataclass
class Identity:
    """One key to offer: from the agent, a file, or a certificate with either."""

    label: str
    blob: bytes | None  # public key (or certificate) blob, when known
    key_type: str
    path: Path | None = None  # the private key file
    agent_key: AgentKey | None = None
    cert: PublicBlob | None = None
    from_profile: bool = False

    @property
    def is_sk(self) -> bool:
        return self.key_type.startswith(SK_PREFIX)


class SocketAgent(AgentSSH):
    """An ssh-agent at a given socket (IdentityAgent), not only $SSH_AUTH_SOCK."""

    def __init__(self, path: str):
        super().__init__()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(AGENT_TIMEOUT)
        try:
            conn.connect(path)
        except OSError:
            conn.close()
            raise
        # paramiko's agent protocol code takes a connected socket here (not in its stubs).
        self._connect(conn)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._close()  # type: ignore[attr-defined]


def open_agent(path: str | None, *,
               system_default: bool = False) -> tuple[AgentSSH | None, str | None]:
    """The agent at `path` and its keys, or (None, why not) when it cannot be reached.

    With no socket but `system_default` (IdentityAgent unset), Windows' own agents
    (OpenSSH's named pipe, Pageant) are asked, as paramiko finds them.
    """
    if path is None:
        if system_default and sys.platform == "win32":
            with contextlib.suppress(paramiko.SSHException, OSError):
                return paramiko.Agent(), None
        return None, None
    if not hasattr(socket, "AF_UNIX"):
        return None, "agent sockets are not supported on this system"
    try:
        return SocketAgent(path), None
    except (OSError, paramiko.SSHException) as exc:
        return None, f"cannot use the agent at {path}: {exc}"


def _blob_type(blob: bytes) -> str:
    (length,) = struct.unpack(">I", blob[:4])
    return blob[4:4 + length].decode(errors="replace")


def read_public(path: Path) -> tuple[str, bytes] | None:
    """(type, blob) of the key in `path` without decrypting it, or None if unknown.

    Tries `path.pub`, then `path` itself as a public key (an IdentityFile that
    names a .pub file), then the public section of an OpenSSH-format private key.
    """
    for candidate in (Path(str(path) + ".pub"), path):
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = text.split()
        if len(fields) >= 2 and not text.startswith("-----"):
            with contextlib.suppress(ValueError, struct.error, IndexError):
                blob = base64.b64decode(fields[1], validate=True)
                return _blob_type(blob), blob
        if "BEGIN OPENSSH PRIVATE KEY" in text:
            body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
            with contextlib.suppress(ValueError, struct.error, IndexError):
                data = base64.b64decode(body)
                return _openssh_public(data)
    return None


def _openssh_public(data: bytes) -> tuple[str, bytes] | None:
    magic = b"openssh-key-v1\0"
    if not data.startswith(magic):
        return None
    pos = len(magic)
    for _ in range(3):  # ciphername, kdfname, kdfoptions
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        pos += 4 + length
    (count,) = struct.unpack(">I", data[pos:pos + 4])
    pos += 4
    if count < 1:
        return None
    (length,) = struct.unpack(">I", data[pos:pos + 4])
    blob = data[pos + 4:pos + 4 + length]
    return _blob_type(blob), blob


# The public fields of each key type, after its name (RFC 4253, PROTOCOL.certkeys, PROTOCOL.u2f).
_PUBLIC_FIELDS = {"ssh-ed25519": 1, "ssh-rsa": 2, "ssh-dss": 4,
                  "ecdsa-sha2-nistp256": 2, "ecdsa-sha2-nistp384": 2, "ecdsa-sha2-nistp521": 2,
                  "sk-ssh-ed25519@openssh.com": 2, "sk-ecdsa-sha2-nistp256@openssh.com": 3}


def _plain_of_cert(blob: bytes) -> bytes | None:
    """The plain public key inside a certificate blob (to find the key that signs for it)."""
    try:
        cert_type = _blob_type(blob)
        if not cert_type.endswith(CERT_SUFFIX):
            return None
        plain_type = cert_type[: -len(CERT_SUFFIX)]
        if plain_type.startswith(SK_PREFIX):
            plain_type += "@openssh.com"
        count = _PUBLIC_FIELDS.get(plain_type)
        if count is None:
            return None
        pos = 4 + len(cert_type.encode())
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        pos += 4 + length  # the nonce
        name = plain_type.encode()
        parts = [struct.pack(">I", len(name)) + name]
        for _ in range(count):
            (length,) = struct.unpack(">I", blob[pos:pos + 4])
            parts.append(blob[pos:pos + 4 + length])
            pos += 4 + length
        return b"".join(parts)
    except (struct.error, ValueError):
        return None


def plan(
    identity_files: list[Path],
    certificate_files: list[Path],
    agent_keys: list[AgentKey],
    *,
    identities_only: bool,
    profile_identity: Path | None,
) -> tuple[list[Identity], list[str]]:
    """The identities to offer, in order, and notes about files that cannot be offered."""
    notes: list[str] = []
    files: list[Identity] = []
    for path in identity_files:
        public = read_public(path)
        from_profile = profile_identity is not None and path == profile_identity
        if public is None and not path.is_file():
            continue  # OpenSSH skips absent defaults silently
        key_type, blob = public if public else ("", None)
        files.append(Identity(str(path), blob, key_type, path=path, from_profile=from_profile))
        if certificate_files:
            continue
        cert_path = Path(str(path) + "-cert.pub")
        cert = read_public(cert_path) if cert_path.is_file() else None
        if cert and cert[0].endswith(CERT_SUFFIX):
            files.append(Identity(str(cert_path), cert[1], cert[0], path=path,
                                  cert=PublicBlob(cert[0], cert[1]), from_profile=from_profile))
    preferred: list[Identity] = []
    for cert_path in certificate_files:
        cert = read_public(cert_path) if cert_path.is_file() else None
        if not cert or not cert[0].endswith(CERT_SUFFIX):
            continue
        plain = _plain_of_cert(cert[1])
        owner = next((f for f in files if f.blob is not None and f.blob == plain), None)
        agent_owner = next((k for k in agent_keys if k.blob == plain), None)
        if owner is None and agent_owner is None:
            notes.append(f"certificate {cert_path}: its private key is neither an "
                         "IdentityFile nor in the agent")
            continue
        preferred.append(Identity(str(cert_path), cert[1], cert[0],
                                  path=owner.path if owner else None, agent_key=agent_owner,
                                  cert=PublicBlob(cert[0], cert[1]),
                                  from_profile=bool(owner and owner.from_profile)))
    for agent_key in agent_keys:
        listed = next((f for f in files if f.blob == agent_key.blob), None)
        if listed is not None:
            files.remove(listed)
            listed.agent_key = agent_key
            preferred.append(listed)
        elif not identities_only:
            comment = getattr(agent_key, "comment", "") or ""
            preferred.append(Identity(f"agent key {comment}".strip(), agent_key.blob,
                                      agent_key.get_name(), agent_key=agent_key))
    preferred += files
    ordered = [i for i in preferred if i.from_profile] + [i for i in preferred
                                                         if not i.from_profile]
    return ordered, notes


_cache_lock = threading.Lock()
_decrypted: dict[tuple[str, int], paramiko.PKey] = {}


def _load_private(path: Path, prompter: Prompter | None, attempts: int) -> paramiko.PKey:
    """The private key in `path`, asking for its passphrase when it is encrypted."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise AuthenticationError(f"cannot read key {path}: {exc.strerror}") from None
    with _cache_lock:
        cached = _decrypted.get((str(path), stamp))
    if cached is not None:
        return cached
    try:
        key = paramiko.PKey.from_path(str(path))
    # paramiko 5 lets cryptography's TypeError through for encrypted OpenSSH-format keys.
    except (paramiko.PasswordRequiredException, TypeError):
        if prompter is None:
            raise AuthenticationError(
                f"key {path} is encrypted and there is no terminal to ask for its passphrase",
                hint=f"add it to ssh-agent (ssh-add {path}) or run from a terminal",
            ) from None
        for _ in range(max(1, attempts)):
            passphrase = prompter.ask(f"Enter passphrase for key '{path}': ", echo=False)
            if not passphrase:
                raise AuthenticationError(f"no passphrase given for {path}") from None
            try:
                # bytes: paramiko 5 hands the passphrase to cryptography as is.
                key = paramiko.PKey.from_path(str(path), passphrase.encode())  # type: ignore[arg-type]
                break
            except (paramiko.SSHException, ValueError, TypeError):
                continue
        else:
            raise AuthenticationError(f"wrong passphrase for {path}") from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise SSHError(f"cannot load key {path}: {exc}") from None
    with _cache_lock:
        _decrypted[(str(path), stamp)] = key
    return key


def signer(identity: Identity, prompter: Prompter | None, attempts: int) -> paramiko.PKey:
    """A paramiko key object that presents `identity` (certificate included) and signs."""
    if identity.agent_key is not None:
        agent_key = identity.agent_key
        if identity.cert is None:
            return agent_key
        # A fresh proxy for the agent's key that presents the certificate.
        key: paramiko.PKey = AgentKey(agent_key.agent, agent_key.blob,
                                      getattr(agent_key, "comment", ""))
    elif identity.path is not None:
        key = copy.copy(_load_private(identity.path, prompter, attempts))
    else:
        raise AuthenticationError(f"no private key for {identity.label}")
    key.public_blob = identity.cert
    return key
