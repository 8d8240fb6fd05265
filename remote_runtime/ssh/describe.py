"""The effective connection for an endpoint, as data: what `profiles show` prints.

Nothing here connects: it is OpenSSH's resolution (`config.resolve`) laid out
hop by hop, with the keys in the order they would be offered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import Target, agent_socket, describe_agent, resolve
from .endpoint import Endpoint
from .identities import read_public


@dataclass
class Hop:
    """One SSH server on the route, in connection order."""

    name: str  # as written (profile host, or a ProxyJump entry)
    hostname: str
    port: int
    user: str
    via: str  # "direct", "ProxyCommand: ...", or "through NAME"
    host_key_name: str  # the name known_hosts entries are looked up under
    known_hosts: list[str]
    records_to: str | None  # where a new host key would be written (None: nowhere)
    strict_host_key_checking: str


@dataclass
class KeyFile:
    path: str
    exists: bool
    key_type: str = ""  # from its public half, when readable without a passphrase
    from_profile: bool = False


@dataclass
class Connection:
    """Everything `up` would use to reach a profile's host."""

    name: str
    source: str  # which resolver answered: "ssh -G (/usr/bin/ssh)" or "fallback reader"
    route: list[Hop] = field(default_factory=list)
    identity_files: list[KeyFile] = field(default_factory=list)
    certificate_files: list[KeyFile] = field(default_factory=list)
    agent: str = ""
    identities_only: bool = False
    global_known_hosts: list[str] = field(default_factory=list)
    hash_known_hosts: bool = False
    auth_methods: list[str] = field(default_factory=list)
    batch_mode: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def target(self) -> Hop | None:
        return self.route[-1] if self.route else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key_file(path: Path, from_profile: bool = False) -> KeyFile:
    public = read_public(path) if path.exists() else None
    return KeyFile(str(path), path.exists(), public[0] if public else "", from_profile)


def _hop(target: Target) -> Hop:
    if target.jump is not None:
        via = f"through {target.jump.alias}"
    elif target.proxy_command:
        via = f"ProxyCommand: {target.proxy_command}"
    else:
        via = "direct"
    return Hop(
        name=target.alias, hostname=target.hostname, port=target.port, user=target.user,
        via=via, host_key_name=target.host_key_name,
        known_hosts=[str(p) for p in target.known_hosts],
        records_to=str(target.record_file) if target.record_file is not None else None,
        strict_host_key_checking=target.strict_host_keys,
    )


def connection(name: str, endpoint: Endpoint) -> Connection:
    """Resolve `endpoint` as `up` would and describe the result."""
    target = resolve(endpoint)
    files = list(target.identity_files)
    if target.profile_identity is not None and target.profile_identity in files:
        files.remove(target.profile_identity)
        files.insert(0, target.profile_identity)
    methods = [m for m, on in (("publickey", target.pubkey_auth),
                               ("keyboard-interactive", target.kbd_interactive_auth),
                               ("password", target.password_auth)) if on]
    notes = []
    if agent_socket(target) is not None and target.identities_only:
        notes.append("IdentitiesOnly: only the agent's copies of the listed keys are offered")
    if any(f.exists and f.key_type.startswith("sk-") for f in map(_key_file, files)):
        notes.append("FIDO (sk-) keys cannot be used by remote-runtime (paramiko cannot "
                     "sign with them); an ordinary key must be offered too")
    return Connection(
        name=name,
        source=target.source,
        route=[_hop(hop) for hop in target.hops],
        identity_files=[_key_file(p, p == target.profile_identity) for p in files],
        certificate_files=[_key_file(p) for p in target.certificate_files],
        agent=describe_agent(target),
        identities_only=target.identities_only,
        global_known_hosts=[str(p) for p in target.global_known_hosts],
        hash_known_hosts=target.hash_known_hosts,
        auth_methods=methods,
        batch_mode=target.batch_mode,
        notes=notes,
    )
