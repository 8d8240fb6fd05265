"""An endpoint resolved the way OpenSSH resolves it into a connectable Target.

The profile's values are given to OpenSSH's resolver (`resolver`) as command-line
options, so they win over ~/.ssh/config as `ssh -p -l -i -J -o` do. Tokens are
expanded once, here, from the final values. A ProxyJump becomes a chain of
Targets, each hop resolved from the user's config like the `ssh -W` that
OpenSSH runs for it: the first hop with its own config's proxy settings, each
later hop reached through the one before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SSHError
from . import tokens
from .configsyntax import Hop, parse_hop
from .endpoint import Endpoint
from .resolver import Resolved, resolve_host

MAX_HOPS = 16


@dataclass(frozen=True)
class Target:
    """One host after OpenSSH's resolution: everything needed to reach and log in to it."""

    alias: str  # the name as given (profile host or jump spec)
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    proxy_command: str | None  # expanded, ready for a shell
    jump: Target | None  # the hop this host is reached through (ProxyJump), if any
    host_key_name: str  # HostKeyAlias, host, or [host]:port
    known_hosts: tuple[Path, ...]  # user known_hosts files; the first records new keys
    global_known_hosts: tuple[Path, ...] = ()
    record_known_hosts: bool = True  # False with UserKnownHostsFile none
    certificate_files: tuple[Path, ...] = ()
    identity_agent: str | None = "SSH_AUTH_SOCK"  # None: no agent; else socket or $VAR
    identities_only: bool = False
    profile_identity: Path | None = None  # the profile's key: offered first
    strict_host_keys: str = "ask"  # "yes", "accept-new", "no" or "ask"
    hash_known_hosts: bool = False
    batch_mode: bool = False
    pubkey_auth: bool = True
    kbd_interactive_auth: bool = True
    password_auth: bool = True
    password_prompts: int = 3
    connect_timeout: float | None = None
    source: str = ""  # which resolver answered
    trusted_host_keys: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def hops(self) -> list[Target]:
        """The route in connection order: first hop, ..., this host."""
        route: list[Target] = []
        node: Target | None = self
        while node is not None:
            route.append(node)
            node = node.jump
        return route[::-1]

    @property
    def record_file(self) -> Path | None:
        """Where a new host key would be recorded (None: nowhere)."""
        if not self.record_known_hosts or not self.known_hosts:
            return None
        return self.known_hosts[0]


def _profile_options(endpoint: Endpoint) -> list[tuple[str, str]]:
    """The profile's values as OpenSSH command-line options (first obtained wins)."""
    options: list[tuple[str, str]] = []
    if endpoint.port is not None:
        options.append(("Port", str(endpoint.port)))
    if endpoint.user is not None:
        options.append(("User", endpoint.user))
    if endpoint.identity_file is not None:
        options.append(("IdentityFile", _quote_arg(str(endpoint.identity_file))))
    if endpoint.proxy_command:
        options.append(("ProxyCommand", endpoint.proxy_command))
    if endpoint.proxy_jump:
        options.append(("ProxyJump", endpoint.proxy_jump))
    if endpoint.host_key_alias:
        options.append(("HostKeyAlias", endpoint.host_key_alias))
    return options


def _quote_arg(value: str) -> str:
    """One word for ssh_config's argument splitter (paths may hold spaces)."""
    if not any(ch in value for ch in " \t\"'\\#"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strict(value: str | None) -> str:
    value = (value or "ask").lower()
    return {"true": "yes", "yes": "yes", "false": "no", "no": "no", "off": "no"}.get(value, value)


def _timeout(value: str | None) -> float | None:
    if value is None or value == "none" or not value.isdigit() or int(value) <= 0:
        return None
    return float(value)


def _build(alias: str, resolved: Resolved, *, endpoint: Endpoint | None, jump: Target | None,
           extra_known_hosts: Path | None, profile_identity: Path | None) -> Target:
    home = Path.home()
    hostname = resolved.get("hostname") or alias
    port = int(resolved.get("port") or 22)
    user = resolved.get("user") or tokens.local_user()
    alias_key = resolved.get("hostkeyalias")
    info = tokens.ConnectionInfo(host_arg=alias, hostname=hostname, port=port,
                                 remote_user=user, host_key_alias=alias_key, home=home,
                                 jump=str(jump.alias) if jump is not None else "")
    identities = tuple(Path(info.expand_path(item, keyword="IdentityFile"))
                       for item in resolved.all("identityfile"))
    certificates = tuple(Path(info.expand_path(item, keyword="CertificateFile"))
                         for item in resolved.all("certificatefile"))
    proxy = resolved.get("proxycommand")
    proxy_command = None
    if proxy is not None and proxy.lower() != "none" and jump is None:
        proxy_command = tokens.percent_expand(
            proxy, {"h": hostname, "n": alias, "p": str(port), "r": user},
            keyword="ProxyCommand")
    agent = resolved.get("identityagent", "SSH_AUTH_SOCK")
    agent = None if agent is None or agent.lower() == "none" else agent
    known_text = resolved.get("userknownhostsfile") or ""
    record = known_text.strip().lower() != "none"
    known = [Path(item) for item in known_text.split()] if record else []
    if extra_known_hosts is not None:
        known.insert(0, extra_known_hosts.expanduser())
        record = True
    global_known = tuple(Path(item) for item in (resolved.get("globalknownhostsfile") or "")
                         .split() if item.lower() != "none")
    key_name = alias_key or (hostname if port == 22 else f"[{hostname}]:{port}")
    return Target(
        alias=alias,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=identities,
        proxy_command=proxy_command,
        jump=jump,
        host_key_name=key_name,
        known_hosts=tuple(dict.fromkeys(known)),
        global_known_hosts=global_known,
        record_known_hosts=record,
        certificate_files=certificates,
        identity_agent=agent,
        identities_only=resolved.flag("identitiesonly"),
        profile_identity=profile_identity,
        strict_host_keys=_strict(resolved.get("stricthostkeychecking")),
        hash_known_hosts=resolved.flag("hashknownhosts"),
        batch_mode=resolved.flag("batchmode"),
        pubkey_auth=(resolved.get("pubkeyauthentication") or "true").lower()
        not in ("false", "no"),
        kbd_interactive_auth=resolved.flag("kbdinteractiveauthentication")
        if "kbdinteractiveauthentication" in resolved.values else True,
        password_auth=resolved.flag("passwordauthentication")
        if "passwordauthentication" in resolved.values else True,
        password_prompts=int(resolved.get("numberofpasswordprompts") or 3),
        connect_timeout=_timeout(resolved.get("connecttimeout")),
        source=resolved.source,
        trusted_host_keys=endpoint.trusted_host_keys if endpoint is not None else (),
    )


def _resolve_hop(hop: Hop, *, through: Target | None, extra_known_hosts: Path | None,
                 depth: int, force_fallback: bool) -> Target:
    """One jump host, as `ssh [-l user] [-p port] [-J earlier] -W ... host` resolves it."""
    tokens.check_hostname(hop.host, "jump host")
    if hop.user is not None:
        tokens.check_username(hop.user, "jump host user")
    options: list[tuple[str, str]] = []
    if hop.port is not None:
        options.append(("Port", str(hop.port)))
    if hop.user is not None:
        options.append(("User", hop.user))
    if through is not None:
        # Reached through the hop before: its own config's proxy settings do not apply.
        options.append(("ProxyJump", "none"))
    resolved = resolve_host(hop.host, options, force_fallback=force_fallback)
    own_jump = None
    if through is None:
        own_jump = _jump_chain(resolved.get("proxyjump"), owner=resolved,
                               extra_known_hosts=extra_known_hosts, depth=depth + 1,
                               force_fallback=force_fallback)
    return _build(hop.host, resolved, endpoint=None, jump=through or own_jump,
                  extra_known_hosts=extra_known_hosts, profile_identity=None)


def _jump_chain(spec: str | None, *, owner: Resolved, extra_known_hosts: Path | None,
                depth: int, force_fallback: bool) -> Target | None:
    """The last hop of a ProxyJump list, each hop reached through the one before it."""
    if not spec or spec.strip().lower() == "none":
        return None
    last = parse_hop(spec.split(",")[-1])
    user = owner.get("user") or tokens.local_user()
    if (last.host == owner.get("hostname") and (last.port or 22) == int(owner.get("port") or 22)
            and (last.user or user) == user):
        # OpenSSH: "jumphost loop via HOST" (e.g. `Host * ProxyJump bastion` reaching bastion)
        raise SSHError(f"jumphost loop via {last.host}: ProxyJump sends {last.host} "
                       "through itself",
                       hint=f"exclude it in ~/.ssh/config (Host * !{last.host}) or give it "
                       "ProxyJump none")
    if depth > MAX_HOPS:
        raise SSHError(f"ProxyJump nests more than {MAX_HOPS} hops deep (a loop in "
                       "~/.ssh/config?)", hint="`ssh -G HOST` shows each host's proxyjump")
    through: Target | None = None
    for item in spec.split(","):
        hop = parse_hop(item)
        through = _resolve_hop(hop, through=through, extra_known_hosts=extra_known_hosts,
                               depth=depth + len(spec.split(",")), force_fallback=force_fallback)
    return through


def resolve(endpoint: Endpoint, *, force_fallback: bool = False) -> Target:
    """The endpoint as OpenSSH would reach it; the profile's values win over ~/.ssh/config.

    Raises SSHError for a host or user name OpenSSH would refuse (before any of
    it reaches a shell), a config OpenSSH rejects, or a ProxyJump loop.
    """
    tokens.check_hostname(endpoint.host)
    if endpoint.user is not None:
        tokens.check_username(endpoint.user)
    resolved = resolve_host(endpoint.host, _profile_options(endpoint),
                            force_fallback=force_fallback)
    jump = _jump_chain(resolved.get("proxyjump"), owner=resolved,
                       extra_known_hosts=endpoint.known_hosts, depth=1,
                       force_fallback=force_fallback)
    return _build(endpoint.host, resolved, endpoint=endpoint, jump=jump,
                  extra_known_hosts=endpoint.known_hosts,
                  profile_identity=endpoint.identity_file.expanduser()
                  if endpoint.identity_file is not None else None)


def describe_agent(target: Target) -> str:
    """The agent socket in use, in words."""
    agent = target.identity_agent
    if agent is None:
        return "none (IdentityAgent none)"
    if agent == "SSH_AUTH_SOCK" or agent.startswith("$"):
        var = "SSH_AUTH_SOCK" if agent == "SSH_AUTH_SOCK" else agent[1:]
        value = os.environ.get(var)
        return f"{value} (${var})" if value else f"none (${var} is not set)"
    return agent


def agent_socket(target: Target) -> str | None:
    """The agent socket path to use, or None for no agent."""
    agent = target.identity_agent
    if agent is None:
        return None
    if agent == "SSH_AUTH_SOCK" or agent.startswith("$"):
        var = "SSH_AUTH_SOCK" if agent == "SSH_AUTH_SOCK" else agent[1:]
        return os.environ.get(var) or None
    return agent
