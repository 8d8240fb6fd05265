"""What `connect` does at once, step by step, saying what each step saw (`doctor`).

`reach(target)` opens the byte stream to the target's sshd (DNS and TCP, its
ProxyCommand, or a channel through its ProxyJump hops) and peeks at the server's
identification line without consuming it; `handshake(link)` runs the SSH handshake
and judges the host key as `connect` would, but never asks and never records it;
`login(shake)` logs in and reports which keys were offered, refused and accepted.
The result of a successful walk becomes a `Session` like `connect`'s.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko

from ..errors import HostKeyError, SSHError
from ..options import Progress
from .auth import LoginReport, diagnose
from .config import Target
from .connect import (
    CONNECT_TIMEOUT,
    KEEPALIVE_SECONDS,
    Closers,
    _open_socket,
    _Route,
    host_key_checker,
    start_transport,
)
from .hostkeys import Verdict, fingerprint
from .prompts import Prompter
from .session import Session

BANNER_TIMEOUT = 10.0
BANNER_LIMIT = 512


@dataclass
class Link:
    """An open byte stream to a target's sshd (not yet SSH)."""

    target: Target
    sock: socket.socket | paramiko.Channel
    how: str  # "TCP 127.0.0.1:22", "ProxyCommand ...", "through bastion"
    banner: str  # the server's identification line, when it could be read before SSH
    proxy_errors: Callable[[], str]
    closers: Closers = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):  # best effort: the doctor is done with it
                closer()
        self.closers.clear()


@dataclass
class HostKey:
    """The server's host key and what known_hosts (or a VM's published keys) say of it."""

    name: str  # the name it is looked up under (host, [host]:port, HostKeyAlias)
    key_type: str
    fingerprint: str
    verdict: Verdict
    strict: str  # StrictHostKeyChecking
    record_file: str | None  # where `up` would record a new key
    refusal: HostKeyError | None  # how `up` refuses it (revoked, mismatch, changed)


@dataclass
class Handshake:
    link: Link
    transport: paramiko.Transport
    server_version: str
    cipher: str
    host_key: HostKey


def addresses(hostname: str, port: int) -> list[tuple[int, str]]:
    """(family, address) of `hostname` as the resolver answers; SSHError when it cannot."""
    try:
        found = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SSHError(f"cannot resolve {hostname}: {exc.strerror or exc}") from None
    return list(dict.fromkeys((int(family), str(sockaddr[0]))
                              for family, _, _, _, sockaddr in found))


def _connect_tcp(target: Target, found: list[tuple[int, str]]) -> tuple[socket.socket, str]:
    timeout = target.connect_timeout or CONNECT_TIMEOUT
    failures = []
    for family, address in found:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((address, target.port))
        except OSError as exc:
            sock.close()
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            failures.append(f"{address}: {why}")
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address
    raise SSHError(f"cannot connect to {target.hostname} port {target.port} "
                   f"({'; '.join(failures)})")


def peek_banner(sock: socket.socket, timeout: float = BANNER_TIMEOUT) -> str:
    """The server's first line, read with MSG_PEEK so the handshake still sees it; "" when
    nothing came within `timeout`. Raises SSHError when the stream ends first."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data and len(data) < BANNER_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0:
            return ""
        sock.settimeout(left)
        try:
            data = sock.recv(BANNER_LIMIT, socket.MSG_PEEK)
        except TimeoutError:
            return ""
        except OSError as exc:
            raise SSHError(f"the connection broke before the server spoke: "
                           f"{exc.strerror or exc}") from None
        if not data:
            raise SSHError("the connection was closed before the server said anything")
        if b"\n" not in data:
            time.sleep(0.02)  # a partial line: wait for the rest without spinning
    sock.settimeout(None)
    lines = data.decode(errors="replace").splitlines()
    # Servers may send other lines before their identification (RFC 4253 4.2).
    return next((line for line in lines if line.startswith("SSH-")), lines[0] if lines else "")


def reach(target: Target, *, prompter: Prompter | None = None,
          progress: Progress | None = None, accept_new_host_key: bool = False,
          banner_timeout: float = BANNER_TIMEOUT) -> Link:
    """Open the stream to `target`'s sshd the way `connect` does. A ProxyJump hop is
    logged in to as `connect` logs in to it (its host key checked). Raises SSHError."""
    closers: Closers = []
    try:
        if target.jump is None and not target.proxy_command:
            sock, address = _connect_tcp(target, addresses(target.hostname, target.port))
            closers.append(sock.close)
            link = Link(target, sock, f"TCP {address} port {target.port}", "",
                        lambda: "", closers)
        else:
            route = _Route(accept_new_host_key, prompter, progress)
            stream, proxy_errors = _open_socket(target, route.session, closers)
            how = (f"through jump host {target.jump.alias}" if target.jump is not None
                   else f"ProxyCommand {target.proxy_command}")
            link = Link(target, stream, how, "", proxy_errors, closers)
        if isinstance(link.sock, socket.socket):
            try:
                link.banner = peek_banner(link.sock, banner_timeout)
            except SSHError as exc:
                detail = link.proxy_errors()
                raise SSHError(f"{exc.message}" + (f" ({detail})" if detail else "")) from None
            if link.banner and not link.banner.startswith("SSH-"):
                raise SSHError(f"something answers, but it is not an SSH server "
                               f"(it said {link.banner[:80]!r})")
        return link
    except BaseException:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):
                closer()
        raise


def handshake(link: Link) -> Handshake:
    """The SSH handshake over `link`, the host key judged without asking or recording."""
    target = link.target
    checker = host_key_checker(target)
    transport = start_transport(link.sock, target, checker, link.proxy_errors, link.closers)
    key = transport.get_remote_server_key()
    key_type, key_b64 = key.get_name(), key.get_base64()
    verdict = checker.classify(key_type, key_b64)
    record = checker.write_file
    return Handshake(
        link=link, transport=transport, server_version=str(transport.remote_version),
        cipher=str(getattr(transport, "remote_cipher", "")),  # not in paramiko's stubs
        host_key=HostKey(name=target.host_key_name, key_type=key_type,
                         fingerprint=fingerprint(key_b64), verdict=verdict,
                         strict=target.strict_host_keys,
                         record_file=str(record) if record is not None else None,
                         refusal=checker.refusal(verdict, key_type, key_b64)))


def login(shake: Handshake, prompter: Prompter | None = None) -> LoginReport:
    """Log in as `connect` would; the report says what was offered, refused, accepted."""
    return diagnose(shake.transport, shake.link.target,
                    prompter if not shake.link.target.batch_mode else None)


def session(shake: Handshake) -> Session:
    """The logged-in connection as a `Session`; it owns the link's closers from now on."""
    link = shake.link
    shake.transport.set_keepalive(KEEPALIVE_SECONDS)
    link.closers.remove(shake.transport.close)
    closers, link.closers = list(link.closers), []
    return Session(shake.transport, link.target, closers)
