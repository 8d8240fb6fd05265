"""An endpoint merged with ~/.ssh/config into a connectable Target.

Profile (endpoint) values win over ~/.ssh/config, which wins over defaults,
as OpenSSH orders command-line options before its config file.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from .. import paths
from ..errors import SSHError
from .endpoint import Endpoint

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True)
class Target:
    """An endpoint after ~/.ssh/config: everything needed to open the socket."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    proxy_command: str | None
    proxy_jump: str | None
    host_key_name: str
    known_hosts: tuple[Path, ...]
    identities_only: bool = False
    extra_known_hosts: tuple[Path, ...] = field(default_factory=tuple)


def _load_ssh_config() -> paramiko.SSHConfig:
    path = paths.user_ssh_config()
    if not path.is_file():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except Exception as exc:  # noqa: BLE001 - paramiko raises many types for bad config
        raise SSHError(f"{path}: cannot parse SSH config: {exc}") from None


def _expand_tokens(text: str, *, host: str, port: int, user: str, alias: str) -> str:
    """OpenSSH's %h %p %r %n %% tokens in ProxyCommand."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "%" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(
                {"h": host, "p": str(port), "r": user, "n": alias, "%": "%"}.get(nxt, ch + nxt)
            )
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def resolve(endpoint: Endpoint) -> Target:
    """Merge an endpoint with ~/.ssh/config; endpoint (profile) values win."""
    cfg = _load_ssh_config().lookup(endpoint.host)
    hostname = cfg.get("hostname", endpoint.host)
    port = endpoint.port or int(cfg.get("port", 22))
    user = endpoint.user or cfg.get("user") or getpass.getuser()
    if endpoint.identity_file is not None:
        identities: tuple[Path, ...] = (endpoint.identity_file.expanduser(),)
    elif cfg.get("identityfile"):
        identities = tuple(Path(os.path.expanduser(p)) for p in cfg["identityfile"])
    else:
        identities = tuple(paths.ssh_dir() / name for name in DEFAULT_IDENTITIES)
    proxy_command = endpoint.proxy_command or cfg.get("proxycommand")
    if proxy_command and proxy_command.strip().lower() == "none":
        proxy_command = None
    proxy_jump = None if proxy_command else (endpoint.proxy_jump or cfg.get("proxyjump"))
    if proxy_jump and proxy_jump.strip().lower() == "none":
        proxy_jump = None
    if proxy_command:
        proxy_command = _expand_tokens(
            proxy_command, host=hostname, port=port, user=user, alias=endpoint.host
        )
    alias = endpoint.host_key_alias or cfg.get("hostkeyalias")
    key_name = alias or (hostname if port == 22 else f"[{hostname}]:{port}")
    known: list[Path] = []
    if endpoint.known_hosts is not None:
        known.append(endpoint.known_hosts.expanduser())
    for item in cfg.get("userknownhostsfile", "").split():
        known.append(Path(os.path.expanduser(item)))
    if not known or endpoint.known_hosts is not None:
        known.append(paths.user_known_hosts())
    return Target(
        alias=endpoint.host,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=identities,
        proxy_command=proxy_command,
        proxy_jump=proxy_jump,
        host_key_name=key_name,
        known_hosts=tuple(dict.fromkeys(known)),
        identities_only=cfg.get("identitiesonly", "no").lower() == "yes",
    )
