"""OpenSSH's expansions: `%` tokens, `${VAR}` and `~`, as ssh_config(5) TOKENS describes them.

Each is applied once, to final values, by the caller that knows which tokens a
keyword accepts (ProxyCommand takes %h %n %p %r; IdentityFile and friends take
the full client set). An unknown token or an unset variable is an error, as in
OpenSSH, never left in place or expanded to nothing.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import SSHError

try:
    import pwd
except ImportError:  # Windows: no passwd database; ~user is not expanded there
    pwd = None  # type: ignore[assignment]

# OpenSSH's ssh.c valid_hostname() and valid_ruser(): names from the command line
# (for us: the profile) may not carry shell metacharacters, because they are
# expanded into ProxyCommand and Match exec, which run through a shell.
_HOST_FORBIDDEN = set("'`\"$\\;&<>|(){}")
_USER_FORBIDDEN = set("'`\";&<>|(){}")


def check_hostname(host: str, what: str = "host name") -> None:
    """Refuse a host name OpenSSH would refuse ("hostname contains invalid characters")."""
    bad = (not host or host.startswith("-")
           or any(ch in _HOST_FORBIDDEN or ch.isspace() or ord(ch) < 32 or ord(ch) == 127
                  for ch in host))
    if bad:
        raise SSHError(f"{what} {host!r} contains characters OpenSSH refuses "
                       "(shell metacharacters, spaces or a leading '-')",
                       hint="give a plain host name, IP address or ~/.ssh/config alias")


def check_username(user: str, what: str = "user name") -> None:
    """Refuse a user name OpenSSH would refuse ("remote username contains invalid characters")."""
    bad = not user or user.startswith("-") or user.endswith("\\")
    for index, ch in enumerate(user):
        if ch in _USER_FORBIDDEN or ord(ch) < 32:
            bad = True
        if ch.isspace() and user[index + 1:index + 2] == "-":
            bad = True
    if bad:
        raise SSHError(f"{what} {user!r} contains characters OpenSSH refuses",
                       hint="give a plain login name")


def percent_expand(text: str, values: Mapping[str, str], *, keyword: str) -> str:
    """Expand `%x` tokens once; `%%` is a literal percent. Unknown tokens are an error."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        token = text[i + 1:i + 2]
        if token == "%":  # noqa: S105 - a %-token, not a password
            out.append("%")
        elif token in values:
            out.append(values[token])
        else:
            shown = f"%{token}" if token else "a trailing %"
            raise SSHError(f"{keyword} {text!r}: unknown token {shown}",
                           hint="see TOKENS in ssh_config(5); write %% for a literal %")
        i += 2
    return "".join(out)


_ENV = re.compile(r"\$\{([^}]*)\}")


def env_expand(text: str, *, keyword: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand `${VAR}` (OpenSSH's dollar_expand); an unset variable is an error."""
    env = os.environ if environ is None else environ

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name or name not in env:
            raise SSHError(f"{keyword} {text!r}: environment variable ${{{name}}} is not set")
        return env[name]

    if "${" in text and "}" not in text[text.index("${"):]:
        raise SSHError(f"{keyword} {text!r}: unterminated ${{")
    return _ENV.sub(one, text)


def tilde_expand(text: str, home: Path) -> str:
    """`~/x` is under `home`; `~user/x` under that user's home directory."""
    if not text.startswith("~"):
        return text
    head, sep, rest = text[1:].partition("/")
    if not head:
        base = str(home)
    else:
        try:
            if pwd is None:
                raise KeyError(head)
            base = pwd.getpwnam(head).pw_dir
        except KeyError:
            raise SSHError(f"{text!r}: no such user {head!r}") from None
    return base.rstrip("/") + ("/" + rest if sep else "")


@dataclass(frozen=True)
class ConnectionInfo:
    """The values behind OpenSSH's client tokens (%C %d %h %i %k %L %l %n %p %r %u)."""

    host_arg: str  # %n: the name as given
    hostname: str  # %h: after HostName
    port: int  # %p
    remote_user: str  # %r
    host_key_alias: str | None
    home: Path  # %d
    jump: str = ""  # %j (OpenSSH 9.6+): the first jump host; empty without one

    def values(self) -> dict[str, str]:
        this_host = socket.gethostname()
        port = str(self.port)
        return {
            "C": connection_hash(this_host, self.hostname, port, self.remote_user, self.jump),
            "L": this_host.split(".")[0],
            "i": _uid(),
            "k": self.host_key_alias or self.host_arg,  # OpenSSH: HostKeyAlias or the name given
            "l": this_host,
            "n": self.host_arg,
            "p": port,
            "d": str(self.home),
            "h": self.hostname,
            "r": self.remote_user,
            "u": local_user(),
            "j": self.jump,
        }

    def expand_path(self, text: str, *, keyword: str) -> str:
        """Tilde, then tokens, then `${VAR}`: how OpenSSH expands file names."""
        expanded = percent_expand(tilde_expand(text, self.home), self.values(), keyword=keyword)
        return env_expand(expanded, keyword=keyword)


def connection_hash(this_host: str, host: str, port: str, user: str, jump: str = "") -> str:
    """%C: SHA-1 of %l%h%p%r (and %j where OpenSSH adds it), in hex."""
    del jump  # OpenSSH 9.2 hashes %l%h%p%r; 9.6 appended %j. Match the former.
    return hashlib.sha1((this_host + host + port + user).encode()).hexdigest()  # noqa: S324


def _uid() -> str:
    """%i: the numeric user id (Windows has none; OpenSSH for Windows leaves %i unused)."""
    try:
        return str(os.getuid())
    except AttributeError:
        return "0"


def local_user() -> str:
    """%u and Match localuser: the login name of this process's user (passwd, as OpenSSH)."""
    try:
        if pwd is not None:
            return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, AttributeError):
        pass
    return getpass.getuser()
