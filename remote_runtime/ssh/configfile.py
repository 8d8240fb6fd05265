"""OpenSSH's ssh_config(5) read the way OpenSSH 9 reads it, for machines without `ssh -G`.

`read_config(host, options, ...)` returns what `ssh -G host` would print for the
keywords this tool uses (lowercase keyword -> values), so `resolver` treats both
sources alike. Followed from OpenSSH's readconf.c: the first value obtained wins
(IdentityFile and CertificateFile accumulate); command-line options (for us, the
profile) come first; `Host` patterns match the name as given, case-sensitively;
`Match` takes all, canonical, final, exec, host, originalhost, user and
localuser, negated with `!`; `Include` globs relative to ~/.ssh (user files) or
/etc/ssh (system files), with the enclosing block's state; a `#` that starts a
word ends the line, except in ProxyCommand, which keeps the raw rest of the line;
`Match final` (or CanonicalizeHostname) reads the files a second time against
the final host name.
"""

from __future__ import annotations

import glob
import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SSHError
from . import tokens
from .configsyntax import (
    Hop,
    is_address,
    match_pattern,
    match_pattern_list,
    parse_hop,
    split_args,
    strdelim,
)

MAX_INCLUDE_DEPTH = 16
EXEC_TIMEOUT = 60.0
# Keywords that collect every value (all others: the first value obtained wins).
ACCUMULATE = {"identityfile", "certificatefile", "localforward", "remoteforward",
              "dynamicforward", "sendenv", "setenv", "canonicaldomains"}
# Keywords whose first line keeps all its values.
MULTI = {"userknownhostsfile", "globalknownhostsfile", "canonicalizepermittedcnames",
         "ignoreunknown", "preferredauthentications"}
# Keywords whose argument is the raw rest of the line (a command run by a shell).
RAW = {"proxycommand", "localcommand", "remotecommand", "knownhostscommand"}
ALIASES = {
    "challengeresponseauthentication": "kbdinteractiveauthentication",
    "pubkeyacceptedkeytypes": "pubkeyacceptedalgorithms",
    "hostbasedkeytypes": "hostbasedacceptedalgorithms",
    "keepalive": "tcpkeepalive",
    "dsaauthentication": "pubkeyauthentication",
}
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk",
                      "id_xmss", "id_dsa")
YES = {"yes", "true"}
NO = {"no", "false"}


@dataclass
class _Jump:
    user: str | None
    host: str
    port: int | None
    extra: str | None  # the hops before the last, as written


@dataclass
class ParsedConfig:
    """Options in the order OpenSSH obtained them; `dump()` is what `ssh -G` prints."""

    host_arg: str
    local_user: str
    home: Path
    values: dict[str, list[str]] = field(default_factory=dict)
    jump: _Jump | None = None
    jump_none: bool = False
    want_final: bool = False

    def first(self, key: str) -> str | None:
        found = self.values.get(key)
        return found[0] if found else None

    def set_first(self, key: str, value: list[str]) -> None:
        if key in ACCUMULATE:
            self.values.setdefault(key, [])
            for item in value:
                if item not in self.values[key]:  # OpenSSH skips duplicate files
                    self.values[key].append(item)
        elif key not in self.values:
            self.values[key] = value


class _Reader:
    def __init__(self, parsed: ParsedConfig, *, final: bool, environ: Mapping[str, str]):
        self.p = parsed
        self.final = final
        self.environ = environ
        # The name Host lines match: as given in the first pass, the final host name after.
        hostname = parsed.first("hostname")
        self.host = _final_hostname(hostname, parsed.host_arg) if final else parsed.host_arg

    # -- files ----------------------------------------------------------------------------

    def read_file(self, path: Path, *, user: bool, check_perm: bool) -> None:
        self._read(path, user=user, check_perm=check_perm, active=[True], depth=0,
                   never=False)

    def _read(self, path: Path, *, user: bool, check_perm: bool, active: list[bool],
              depth: int, never: bool) -> None:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SSHError(f"cannot read SSH config {path}: {exc.strerror}") from None
        with handle:
            if check_perm and os.name == "posix":  # OpenSSH's check; Windows has ACLs
                info = os.fstat(handle.fileno())
                owner_ok = info.st_uid in (0, getattr(os, "getuid", lambda: 0)())
                if not owner_ok or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    raise SSHError(f"Bad owner or permissions on {path}",
                                   hint=f"chmod go-w {path} (OpenSSH refuses it too)")
            text = handle.read().decode("utf-8", errors="replace")
        for number, line in enumerate(text.split("\n"), start=1):
            self._line(line, f"{path} line {number}", user=user, active=active,
                       depth=depth, never=never)

    # -- one line -------------------------------------------------------------------------

    def _line(  # noqa: PLR0911 - readconf.c's switch
            self, line: str, where: str, *, user: bool, active: list[bool],
            depth: int, never: bool) -> None:
        line = line.rstrip(" \t\r\n\f")
        keyword, rest = strdelim(line)
        if keyword is None or not keyword or keyword.startswith("#"):
            return
        keyword = keyword.lower()
        if not rest:
            raise SSHError(f"{where}: no argument after keyword \"{keyword}\"")
        keyword = ALIASES.get(keyword, keyword)
        if keyword == "host":
            active[0] = self._host_line(split_args(rest, where), never)
            return
        if keyword == "match":
            result = self._match_line(rest, where)
            active[0] = False if never else result
            return
        if keyword == "include":
            self._include(split_args(rest, where), where, user=user, active=active,
                          depth=depth, never=never)
            return
        if not active[0]:
            return
        if keyword in RAW:
            self._raw(keyword, rest)
            return
        if keyword == "proxyjump":
            self._proxy_jump(rest, where)
            return
        self._option(keyword, split_args(rest, where), where)

    def _option(self, keyword: str, args: list[str], where: str) -> None:
        if not args:
            raise SSHError(f"{where}: no argument after keyword \"{keyword}\"")
        if keyword == "port" and (not args[0].isdigit() or not 0 < int(args[0]) < 65536):
            raise SSHError(f"{where}: bad port {args[0]!r}")
        if keyword == "canonicalizehostname" and args[0].lower() in YES | {"always"}:
            self.p.want_final = True
        self.p.set_first(keyword, args if keyword in ACCUMULATE | MULTI
                         else [args[0]])

    def _raw(self, keyword: str, rest: str) -> None:
        value = rest.lstrip(" \t=")
        if keyword == "proxycommand" and (self.p.jump is not None or self.p.jump_none):
            return  # a ProxyJump obtained first wins
        self.p.set_first(keyword, [value])

    def _proxy_jump(self, rest: str, where: str) -> None:
        spec = rest.lstrip(" \t=")
        raw = spec
        spec = spec.split("#", 1)[0].rstrip()
        hops = [parse_hop(item, where) for item in spec.split(",")] if \
            raw.lower() != "none" else []
        if "proxycommand" in self.p.values or self.p.jump is not None or self.p.jump_none:
            return
        if raw.lower() == "none":
            self.p.jump_none = True
            return
        last = hops[-1]
        extra = spec.rsplit(",", 1)[0] if "," in spec else None
        self.p.jump = _Jump(last.user, last.host, last.port, extra)
        self.p.values["proxycommand"] = ["none"]

    def _host_line(self, patterns: Sequence[str], never: bool) -> bool:
        if never:
            return False
        matched = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            if match_pattern(self.host, pattern.removeprefix("!")):
                if negated:
                    return False
                matched = True
        return matched

    def _match_host(self) -> str:
        """The host `Match host` sees: HostName so far (%h expanded), else the name given."""
        p = self.p
        hostname = p.first("hostname")
        if self.final:
            return _final_hostname(hostname, p.host_arg)
        if hostname is not None:
            return tokens.percent_expand(hostname, {"h": p.host_arg}, keyword="HostName")
        return p.host_arg

    def _match_line(self, text: str, where: str) -> bool:
        """OpenSSH's match_cfg_line: every criterion must hold (each may be negated)."""
        host = self._match_host()
        result, attributes = True, 0
        rest = text
        while True:
            attrib, rest = strdelim(rest)
            if not attrib or attrib.startswith("#"):
                break
            negate = attrib.startswith("!")
            name = attrib.removeprefix("!").lower()
            if name == "all":
                arg, rest = strdelim(rest)
                if attributes > 1 or (arg and not arg.startswith("#")):
                    raise SSHError(f"{where}: '{attrib}' cannot be combined with other "
                                   "Match attributes")
                return result and not negate
            attributes += 1
            if name in ("canonical", "final"):
                self.p.want_final = self.p.want_final or name == "final"
                hit = self.final
            else:
                arg, rest = strdelim(rest)
                if not arg or arg.startswith("#"):
                    raise SSHError(f"{where}: Missing Match criteria for {name}")
                if name == "exec" and not result:
                    continue  # OpenSSH skips exec once an earlier criterion failed
                hit = self._criterion(name, arg, host, where)
            if hit == negate:
                result = False
        if attributes == 0:
            raise SSHError(f"{where}: One or more attributes required for Match")
        return result

    def _criterion(self, name: str, arg: str, host: str, where: str) -> bool:
        p = self.p
        ruser = p.first("user") or p.local_user
        if name == "host":
            return match_pattern_list(host.lower(), arg, lower=True)
        if name == "originalhost":
            return match_pattern_list(p.host_arg.lower(), arg, lower=True)
        if name == "user":
            return match_pattern_list(ruser, arg, lower=False)
        if name == "localuser":
            return match_pattern_list(p.local_user, arg, lower=False)
        if name == "exec":
            info = tokens.ConnectionInfo(
                host_arg=p.host_arg, hostname=host, port=int(p.first("port") or 22),
                remote_user=ruser, host_key_alias=p.first("hostkeyalias") or host, home=p.home)
            command = tokens.percent_expand(arg, info.values(), keyword="Match exec")
            return self._exec(command, where)
        raise SSHError(f"{where}: Unsupported Match attribute {name}")

    def _exec(self, command: str, where: str) -> bool:
        shell = self.environ.get("SHELL") or "/bin/sh"
        try:
            done = subprocess.run([shell, "-c", command], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, timeout=EXEC_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SSHError(f"{where}: Match exec {command!r} failed: {exc}") from None
        return done.returncode == 0

    def _include(self, args: Sequence[str], where: str, *, user: bool, active: list[bool],
                 depth: int, never: bool) -> None:
        if depth >= MAX_INCLUDE_DEPTH:
            raise SSHError(f"{where}: Include nested too deeply (more than "
                           f"{MAX_INCLUDE_DEPTH} levels)")
        for arg in args:
            if arg.startswith("~") and not user:
                raise SSHError(f"{where}: bad include path {arg}")
            path = arg if arg.startswith(("/", "~")) else (
                ("~/.ssh/" if user else "/etc/ssh/") + arg)
            # glob(3) with GLOB_TILDE: `~` is $HOME, sorted, no dot files for `*`.
            pattern = os.path.expanduser(path) if path.startswith("~") else path
            enclosing = active[0]
            for path in sorted(glob.glob(pattern)):
                self._read(Path(path), user=user, check_perm=True, active=active,
                           depth=depth + 1, never=never or not enclosing)
                active[0] = enclosing


def _final_hostname(hostname: str | None, host_arg: str) -> str:
    """ssh.c: HostName with %h expanded, lowercased unless it is an address."""
    host = host_arg if hostname is None else tokens.percent_expand(
        hostname, {"h": host_arg}, keyword="HostName")
    return host if is_address(host) else host.lower()


def read_config(
    host: str,
    *,
    command_line: Sequence[tuple[str, str]] = (),
    user_config: Path | None,
    system_config: Path | None,
    home: Path,
    environ: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """What `ssh -G [-o K=V ...] host` prints, for the keywords this tool uses.

    `command_line` holds (keyword, value) pairs given before any file, as `-o`
    options are (the profile's values); `user_config` is ~/.ssh/config (checked
    for safe permissions, as OpenSSH does), `system_config` /etc/ssh/ssh_config.
    """
    env = os.environ if environ is None else environ
    parsed = ParsedConfig(host_arg=host, local_user=tokens.local_user(), home=home)
    for final in (False, True):
        reader = _Reader(parsed, final=final, environ=env)
        if not final:
            for keyword, value in command_line:
                reader._line(f"{keyword} {value}", "command line", user=False,
                             active=[True], depth=0, never=False)
        if user_config is not None:
            reader.read_file(user_config, user=True, check_perm=True)
        if system_config is not None:
            reader.read_file(system_config, user=False, check_perm=False)
        if not parsed.want_final:
            break
    return dump(parsed)


def dump(parsed: ParsedConfig) -> dict[str, list[str]]:
    """The `ssh -G` view of parsed options, with OpenSSH's defaults filled in."""
    first = parsed.first
    hostname = _final_hostname(first("hostname"), parsed.host_arg)
    user = first("user") or parsed.local_user
    port = int(first("port") or 22)
    out: dict[str, list[str]] = {
        "host": [parsed.host_arg],
        "hostname": [hostname],
        "user": [user],
        "port": [str(port)],
    }
    identities = parsed.values.get("identityfile") or [
        f"~/.ssh/{name}" for name in DEFAULT_IDENTITIES]
    out["identityfile"] = list(identities)
    if parsed.values.get("certificatefile"):
        out["certificatefile"] = list(parsed.values["certificatefile"])
    info = tokens.ConnectionInfo(host_arg=parsed.host_arg, hostname=hostname, port=port,
                                 remote_user=user, host_key_alias=first("hostkeyalias"),
                                 home=parsed.home)
    agent = first("identityagent")
    if agent is not None:
        if agent not in ("none", "SSH_AUTH_SOCK") and not (
                agent.startswith("$") and not agent.startswith("${")):
            agent = info.expand_path(agent, keyword="IdentityAgent")
        out["identityagent"] = [agent]
    known = parsed.values.get("userknownhostsfile") or [
        "~/.ssh/known_hosts", "~/.ssh/known_hosts2"]
    if known != ["none"]:
        known = [info.expand_path(item, keyword="UserKnownHostsFile") for item in known]
    out["userknownhostsfile"] = [" ".join(known)]
    out["globalknownhostsfile"] = [" ".join(parsed.values.get("globalknownhostsfile") or [
        "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"])]
    proxy = first("proxycommand")
    if proxy is not None and proxy.lower() != "none":
        out["proxycommand"] = [proxy]
    if parsed.jump is not None and parsed.jump.host.lower() != "none":
        last = str(Hop(parsed.jump.host, parsed.jump.user, parsed.jump.port))
        if is_address(parsed.jump.host) and not last.startswith(("[", f"{parsed.jump.user}@[")):
            last = last.replace(parsed.jump.host, f"[{parsed.jump.host}]", 1)
        out["proxyjump"] = [f"{parsed.jump.extra},{last}" if parsed.jump.extra else last]
    alias = first("hostkeyalias")
    if alias is not None:
        out["hostkeyalias"] = [alias]
    out["stricthostkeychecking"] = [_strict(first("stricthostkeychecking"))]
    for key, default in (("hashknownhosts", "no"), ("identitiesonly", "no"),
                         ("batchmode", "no"), ("kbdinteractiveauthentication", "yes"),
                         ("passwordauthentication", "yes")):
        value = (first(key) or default).lower()
        out[key] = ["yes" if value in YES else "no"]
    pubkey = (first("pubkeyauthentication") or "yes").lower()
    out["pubkeyauthentication"] = [
        "true" if pubkey in YES else "false" if pubkey in NO else pubkey]
    out["numberofpasswordprompts"] = [first("numberofpasswordprompts") or "3"]
    out["connecttimeout"] = [first("connecttimeout") or "none"]
    if first("preferredauthentications"):
        out["preferredauthentications"] = [",".join(parsed.values["preferredauthentications"])]
    return out


def _strict(value: str | None) -> str:
    value = (value or "ask").lower()
    return {"yes": "true", "no": "false", "off": "false", "true": "true",
            "false": "false"}.get(value, value)
