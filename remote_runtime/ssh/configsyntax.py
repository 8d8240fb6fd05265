"""ssh_config(5)'s syntax as OpenSSH's readconf.c and misc.c parse it.

Words (argv_split: quotes, backslash escapes, `#` at a word's start ends the
line), keyword separation (strdelim: whitespace or one `=`), patterns (only `*`
and `?`; comma lists with `!` negation), and ProxyJump hops
([user@]host[:port], [IPv6]:port, ssh://[user@]host[:port]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SSHError


def split_args(text: str, where: str) -> list[str]:
    """OpenSSH's argv_split: quotes, backslash escapes, and `#` at a word's start ends it."""
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        if text[i] == "#":
            break
        quote = ""
        arg: list[str] = []
        while i < n:
            ch = text[i]
            if ch == "\\" and i + 1 < n and (
                    text[i + 1] in "'\"\\" or (not quote and text[i + 1] == " ")):
                arg.append(text[i + 1])
                i += 2
                continue
            if not quote and ch in " \t":
                break
            if not quote and ch in "\"'":
                quote = ch
            elif quote and ch == quote:
                quote = ""
            else:
                arg.append(ch)
            i += 1
        if quote:
            raise SSHError(f"{where}: invalid quotes")
        args.append("".join(arg))
    return args


def strdelim(text: str) -> tuple[str | None, str]:
    """OpenSSH's strdelim: one word (a "quoted" one too), split at whitespace or one `=`."""
    text = text.lstrip(" \t\r\n")
    if not text:
        return None, ""
    if text[0] == '"':
        end = text.find('"', 1)
        if end < 0:
            return None, ""
        word, rest = text[1:end], text[end + 1:]
    else:
        match = re.search(r"[ \t\r\n=]", text)
        if match is None:
            return text, ""
        word, rest = text[:match.start()], text[match.start():]
    rest = rest.lstrip(" \t\r\n")
    if rest.startswith("="):
        rest = rest[1:].lstrip(" \t\r\n")
    return word, rest


def match_pattern(name: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: `*` and `?` only."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def match_pattern_list(name: str, patterns: str, *, lower: bool) -> bool:
    """A comma list of patterns, `!` negating: a negated match wins over any other."""
    positive = False
    for item in patterns.split(","):
        negated = item.startswith("!")
        pattern = item.removeprefix("!")
        if lower:
            pattern = pattern.lower()
        if match_pattern(name, pattern):
            if negated:
                return False
            positive = True
    return positive


def is_address(host: str) -> bool:
    return ":" in host or re.fullmatch(r"[0-9.]+", host) is not None


@dataclass(frozen=True)
class Hop:
    """One ProxyJump hop: [user@]host[:port] or ssh://[user@]host[:port]."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


def parse_hop(text: str, where: str = "ProxyJump") -> Hop:  # noqa: PLR0912 - one per form
    """OpenSSH's parse_ssh_uri / parse_user_host_port for one hop."""
    item = text.strip()
    uri = item.startswith("ssh://")
    if uri:
        item = item[len("ssh://"):]
        if item.endswith("/"):
            item = item[:-1]
        if "/" in item:
            raise SSHError(f"{where}: invalid ssh:// hop {text!r}")
    user: str | None = None
    if "@" in item:
        user, _, item = item.rpartition("@")
        if ";" in user:  # ssh URIs allow ;parameters after the user; OpenSSH drops them
            user = user.split(";", 1)[0]
        if not user:
            raise SSHError(f"{where}: empty user name in hop {text!r}")
    port_text = ""
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise SSHError(f"{where}: unclosed [ in hop {text!r}")
        host, after = item[1:end], item[end + 1:]
        if after and not after.startswith(":"):
            raise SSHError(f"{where}: invalid hop {text!r}")
        port_text = after[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise SSHError(f"{where}: no host in hop {text!r}")
    if uri and not valid_domain(host):
        # OpenSSH's parse_uri takes only a domain name (valid_domain): no IPv6 literal.
        raise SSHError(f"{where}: Invalid ProxyJump hop {text!r} (an ssh:// URI takes a "
                       "host name)")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SSHError(f"{where}: bad port in hop {text!r}")
        port = int(port_text)
    return Hop(host=host, user=user, port=port)


def valid_domain(name: str) -> bool:
    """OpenSSH's valid_domain: letters, digits, '-', '.', '_'; starting alphanumeric."""
    return (bool(name) and name[0].isalnum() and ".." not in name
            and all(c.isalnum() or c in "-._" for c in name))
