"""Ask OpenSSH how it would connect: `ssh -G`, or the fallback reader where that cannot answer.

`ssh -G HOST` resolves ~/.ssh/config, /etc/ssh/ssh_config, Include, Match and
tokens exactly as `ssh HOST` would, without connecting (DESIGN.md fact 14). The
profile's values are passed as its command-line options, so they win as they
do in OpenSSH. The fallback (`configfile`) is used only when no OpenSSH client
is installed, or when OpenSSH's home directory is not this process's $HOME (a
test's temporary home, `sudo` keeping HOME): ssh reads the passwd database's
home, and the user's $HOME is what they mean by `~`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import SSHError
from . import configfile

SSH_G_TIMEOUT = 30.0  # Match exec runs user commands; OpenSSH itself has no limit
SYSTEM_CONFIG = Path("/etc/ssh/ssh_config")


@dataclass(frozen=True)
class Resolved:
    """What OpenSSH would use for one host: `ssh -G`'s lines, keyword -> values."""

    values: dict[str, list[str]]
    source: str  # "ssh -G" (with the client's path) or "fallback reader"

    def get(self, key: str, default: str | None = None) -> str | None:
        found = self.values.get(key)
        return found[0] if found else default

    def all(self, key: str) -> list[str]:
        return list(self.values.get(key, []))

    def flag(self, key: str) -> bool:
        return (self.get(key) or "no").lower() in ("yes", "true")


def ssh_client() -> str | None:
    """The OpenSSH client on PATH (`ssh`, `ssh.exe` on Windows), or None."""
    return shutil.which("ssh")


@functools.cache
def _client_home(client: str, home_env: str, path_env: str) -> str | None:
    """The home directory `client` expands `~` and %d to (its passwd entry's), or None."""
    del home_env, path_env  # cache keys: a test may change them
    try:
        done = subprocess.run(
            [client, "-G", "-F", os.devnull, "-o", "UserKnownHostsFile=%d", "localhost"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=SSH_G_TIMEOUT,
            check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "userknownhostsfile":
            return value.strip()
    return None


def _same_dir(a: str | None, b: Path) -> bool:
    if not a:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(a) == os.path.normpath(str(b))


def openssh_usable() -> str | None:
    """The client whose `-G` answers for this process's $HOME, or None (then: fallback)."""
    client = ssh_client()
    if client is None:
        return None
    home = Path.home()
    seen = _client_home(client, str(home), os.environ.get("PATH", ""))
    return client if _same_dir(seen, home) else None


def _options_argv(options: Sequence[tuple[str, str]]) -> list[str]:
    argv = []
    for key, value in options:
        argv += ["-o", f"{key}={value}"]
    return argv


def parse_dump(text: str) -> dict[str, list[str]]:
    """`ssh -G` output: one `keyword value` per line; repeated keywords accumulate."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            values.setdefault(key.lower(), []).append(value)
    return values


def resolve_host(host: str, options: Sequence[tuple[str, str]] = (),
                 *, force_fallback: bool = False) -> Resolved:
    """OpenSSH's settings for `host`, with `options` given as `-o keyword=value` (they win).

    Raises SSHError with OpenSSH's own message when it rejects the config.
    """
    client = None if force_fallback else openssh_usable()
    if client is not None:
        argv = [client, "-G", *_options_argv(options), "--", host]
        try:
            done = subprocess.run(argv, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=SSH_G_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise SSHError(f"`ssh -G {host}` took more than {SSH_G_TIMEOUT:.0f}s "
                           "(a slow Match exec in ~/.ssh/config?)") from None
        except OSError as exc:
            raise SSHError(f"cannot run {client}: {exc}") from None
        if done.returncode != 0:
            said = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            raise SSHError(f"OpenSSH rejects the settings for {host}: {said}",
                           hint="check ~/.ssh/config (`ssh -G HOST` shows the same)")
        return Resolved(parse_dump(done.stdout), f"ssh -G ({client})")
    user_config = paths.user_ssh_config()
    values = configfile.read_config(
        host, command_line=options, user_config=user_config,
        system_config=SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None,
        home=Path.home())
    return Resolved(values, "fallback reader")
