"""Authentication as the user's keys allow: agent keys, then key files.

A passphrase is asked only through the prompt the caller gives (a terminal);
without one, an encrypted key is an error that says how to load it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import paramiko

from ..errors import AuthenticationError, SSHError
from .config import Target

PassphrasePrompt = Callable[[Path], str]


def load_key(path: Path, prompt: PassphrasePrompt | None) -> paramiko.PKey | None:
    if not path.is_file():
        return None
    try:
        return paramiko.PKey.from_path(str(path))
    except paramiko.PasswordRequiredException:
        if prompt is None:
            raise AuthenticationError(
                f"key {path} is encrypted and there is no terminal to ask for its passphrase",
                hint=f"add it to ssh-agent (ssh-add {path}) or run from a terminal",
            ) from None
        for _ in range(3):
            passphrase = prompt(path)
            try:
                return paramiko.PKey.from_path(str(path), passphrase)
            except paramiko.SSHException:
                continue
        raise AuthenticationError(f"wrong passphrase for {path}") from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise AuthenticationError(f"cannot load key {path}: {exc}") from None


def authenticate(
    transport: paramiko.Transport, target: Target, prompt: PassphrasePrompt | None
) -> None:
    tried: list[str] = []
    keys: list[tuple[str, paramiko.PKey]] = []
    if not target.identities_only:
        with contextlib.suppress(paramiko.SSHException):  # no agent running
            keys.extend(("agent key", k) for k in paramiko.Agent().get_keys())
    for path in target.identity_files:
        key = load_key(path, prompt)
        if key is not None:
            keys.append((str(path), key))
    for label, key in keys:
        try:
            transport.auth_publickey(target.user, key)
        except paramiko.AuthenticationException:
            tried.append(label)
            continue
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"SSH connection to {target.alias} failed during login: {exc}") from None
        if transport.is_authenticated():
            return
    what = ", ".join(tried) if tried else "no key found"
    raise AuthenticationError(
        f"{target.user}@{target.hostname} refused every key ({what})",
        hint="check ssh.user and ssh.identity_file in the profile, or load the key into ssh-agent",
    )
