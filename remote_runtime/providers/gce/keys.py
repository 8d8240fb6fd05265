"""Keys the way gcloud handles them: the user name, the key pair, metadata entries, host keys.

Pure functions over strings and files; the API calls live in `provider`.
Conventions follow the Cloud SDK (`command_lib/util/ssh/ssh.py`,
`command_lib/compute/ssh_utils.py`): key `~/.ssh/google_compute_engine`,
metadata entry `user:ssh-rsa AAAA... comment` under `ssh-keys`, host keys from
the `hostkeys/` guest attributes for the types gcloud accepts.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import filelock

from ...errors import SSHError
from ...options import Progress

DEFAULT_KEY_NAME = "google_compute_engine"
KNOWN_HOSTS_NAME = "google_compute_known_hosts"
SSH_KEYS = "ssh-keys"
LEGACY_SSH_KEYS = "sshKeys"
HOSTKEY_TYPES = ("ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256")  # as gcloud
RSA_BITS = 3072


def default_user(environ: Mapping[str, str]) -> str:
    """The local user name, as gcloud picks it (`getpass.getuser()`).

    gcloud keeps a name that is ASCII without spaces as it is; otherwise it
    uses its account's name mapped by GAIA rules (lowercase, non-alphanumerics
    to '_', a leading 'g' unless it starts with a letter, at most 32
    characters). We have no gcloud account, so we map the local name that way.
    """
    name = next((environ[v] for v in ("LOGNAME", "USER", "LNAME", "USERNAME")
                 if environ.get(v)), "")
    if not name:
        name = _account_name()
    if all(ord(c) < 128 and c != " " for c in name):
        return name
    mapped = "".join(c if c.isalnum() and ord(c) < 128 else "_" for c in name.lower())
    if not mapped[:1].isalpha():
        mapped = "g" + mapped
    return mapped[:32]


def _account_name() -> str:
    """The login name from the user database where there is one (POSIX); Windows always
    sets USERNAME, read above."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "user"


def parse_public_key(line: str) -> tuple[str, str, str]:
    """(type, base64, comment) of an OpenSSH public key line; ValueError if it is not one."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    kind, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None
    length = int.from_bytes(raw[:4], "big")
    if raw[4:4 + length].decode("ascii", "replace") != kind:
        raise ValueError(f"the key data does not match its type {kind!r}")
    return kind, blob, parts[2] if len(parts) > 2 else ""


def ensure_key_pair(path: Path, comment: str, environ: Mapping[str, str],
                    progress: Progress) -> str:
    """Make sure `path` and `path.pub` exist (creating an RSA key as gcloud does).

    Returns the public key line.
    """
    pub = Path(f"{path}.pub")
    if not (path.exists() and pub.exists()):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Parallel jobs on a fresh machine all find no key: one makes it, the others wait.
        with filelock.FileLock(f"{path}.lock", timeout=180):
            _make_pair(path, pub, comment, environ, progress)
    try:
        line = pub.read_text(encoding="ascii").splitlines()[0].strip()
        parse_public_key(line)
    except (OSError, UnicodeDecodeError, IndexError, ValueError) as exc:
        raise SSHError(f"{pub}: not a usable public key ({exc})",
                       hint=f"remove {path} and {pub} to let a new pair be created") from None
    return line


def _make_pair(path: Path, pub: Path, comment: str, environ: Mapping[str, str],
               progress: Progress) -> None:
    if not path.exists():
        if pub.exists():
            raise SSHError(f"{pub} exists but its private key {path} does not",
                           hint=f"remove {pub} to let a new key pair be created")
        progress(f"creating SSH key {path}")
        _generate(path, comment, environ)
    elif not pub.exists():
        progress(f"writing the missing public key {pub}")
        pub.write_text(_derive_public(path, environ) + f" {comment}\n", encoding="ascii")


def _keygen(environ: Mapping[str, str]) -> str | None:
    return shutil.which("ssh-keygen", path=environ.get("PATH", os.defpath))


def _generate(path: Path, comment: str, environ: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    keygen = _keygen(environ)
    if keygen is not None:
        result = subprocess.run(
            [keygen, "-q", "-t", "rsa", "-b", str(RSA_BITS), "-N", "", "-C", comment,
             "-f", str(path)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise SSHError(f"ssh-keygen could not create {path}: "
                           f"{(result.stderr or result.stdout).strip()}")
        return
    # No OpenSSH client: write the same kind of key with `cryptography`.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    # O_BINARY: on Windows a descriptor opens in text mode, which would rewrite the key's
    # line ends.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    Path(f"{path}.pub").write_text(f"{public.decode()} {comment}\n", encoding="ascii")


def _derive_public(path: Path, environ: Mapping[str, str]) -> str:
    keygen = _keygen(environ)
    if keygen is not None:
        result = subprocess.run([keygen, "-y", "-f", str(path)], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=30, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return " ".join(result.stdout.split()[:2])
        raise SSHError(f"cannot read the public half of {path}: {result.stderr.strip()}",
                       hint=f"write it to {path}.pub yourself (ssh-keygen -y -f {path})")
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise SSHError(f"cannot read the private key {path}: {exc}") from None
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


# --- metadata -------------------------------------------------------------------


def metadata_flag(items: Mapping[str, str], key: str) -> bool | None:
    """True/False when `key` is set ('true' in any case means True), None when absent."""
    if key not in items:
        return None
    return items[key].strip().lower() == "true"


def has_key(value: str | None, user: str, public_line: str) -> bool:
    """Is `user`'s key (same type and key data; any comment) among the entries?"""
    kind, blob, _ = parse_public_key(public_line)
    for line in (value or "").splitlines():
        entry_user, sep, rest = line.strip().partition(":")
        if not sep or entry_user != user:
            continue
        fields = rest.split()
        if fields[:2] == [kind, blob]:
            return True
    return False


def add_key(value: str | None, user: str, public_line: str) -> str:
    """`value` with `user:<key>` appended; every existing entry is kept byte for byte."""
    entry = f"{user}:{public_line.strip()}"
    if not value:
        return entry
    return value + ("" if value.endswith("\n") else "\n") + entry


# --- host keys ----------------------------------------------------------------------


def host_keys_from_guest_attributes(items: list[tuple[str, str, str]]
                                    ) -> tuple[tuple[str, str], ...]:
    """(type, base64) pairs from (namespace, key, value) guest attributes, as gcloud reads them.

    Only the `hostkeys` namespace and the key types gcloud supports; a value is
    cut at the first whitespace and must be plain base64.
    """
    found: list[tuple[str, str]] = []
    for namespace, kind, value in items:
        if namespace != "hostkeys" or kind not in HOSTKEY_TYPES or not value.split():
            continue
        blob = value.split()[0]
        try:
            if base64.b64encode(base64.b64decode(blob, validate=True)).decode() != blob:
                continue
        except (binascii.Error, ValueError):
            continue
        found.append((kind, blob))
    return tuple(found)
