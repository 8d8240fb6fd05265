"""Open an authenticated, host-key-checked SSH session to an endpoint.

`connect(endpoint)` resolves the endpoint as OpenSSH would (`config`), walks
the route hop by hop (ProxyJump hops in the order written, each one's host key
checked against its own known_hosts files; or a ProxyCommand; or a direct
socket), checks the host key (`hostkeys`), logs in (`auth`) and returns a
`Session`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

import paramiko

from ..errors import AuthenticationError, SSHError
from ..options import Progress
from .auth import authenticate
from .config import Target, resolve
from .endpoint import Endpoint
from .hostkeys import HostKeyChecker
from .prompts import Prompter
from .session import Session
from .streams import ProxyCommandSocket, ReadAheadSocket

# aes128-gcm first: measured fastest in paramiko (DESIGN.md fact 6).
PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
KEEPALIVE_SECONDS = 15
CONNECT_TIMEOUT = 20.0

Closers = list[Callable[[], None]]


def _open_socket(target: Target, hop: Callable[[Target], Session],
                 closers: Closers) -> tuple[socket.socket | paramiko.Channel, Callable[[], str]]:
    """The byte stream to `target`'s SSH server, and a function describing proxy errors."""
    timeout = target.connect_timeout or CONNECT_TIMEOUT
    if target.jump is not None:
        jump = hop(target.jump)
        closers.append(jump.close)
        try:
            channel = jump.transport.open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0),
                timeout=timeout,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(
                f"jump host {target.jump.alias} could not reach "
                f"{target.hostname}:{target.port}: {exc}"
            ) from None
        return channel, lambda: ""
    if target.proxy_command:
        proxy = ProxyCommandSocket(target.proxy_command)
        closers.append(proxy.close)
        return proxy.sock, proxy.failure_detail
    try:
        sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
    except OSError as exc:
        raise SSHError(
            f"cannot reach {target.hostname}:{target.port}: {exc.strerror or exc}"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, lambda: ""


def start_transport(sock: socket.socket | paramiko.Channel, target: Target,
                    checker: HostKeyChecker, proxy_errors: Callable[[], str],
                    closers: Closers) -> paramiko.Transport:
    """The SSH handshake over `sock` (AES-GCM preferred, known host-key types first); its
    closer goes first in `closers`. Raises SSHError naming what the proxy said, if any."""
    # A real socket (direct or ProxyCommand's socketpair) gets read-ahead;
    # a jump host's channel already buffers.
    stream = ReadAheadSocket(sock) if isinstance(sock, socket.socket) else sock
    # Both are socket-like; paramiko's stubs name only its own types.
    transport = paramiko.Transport(stream)  # type: ignore[arg-type]
    closers.insert(0, transport.close)
    options = transport.get_security_options()
    options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in options.ciphers) + \
        tuple(c for c in options.ciphers if c not in PREFERRED_CIPHERS)
    options.key_types = checker.preferred_key_types(options.key_types)
    try:
        transport.start_client(timeout=target.connect_timeout or CONNECT_TIMEOUT)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        detail = proxy_errors()
        reason = str(exc) or type(exc).__name__  # EOFError() has no text
        raise SSHError(
            f"SSH handshake with {target.alias} failed: "
            + (f"{detail} ({reason})" if detail else reason)
        ) from None
    return transport


def host_key_checker(target: Target) -> HostKeyChecker:
    """The checker of `target`'s host key, as its settings say."""
    return HostKeyChecker(
        target.host_key_name, target.known_hosts, trusted=target.trusted_host_keys,
        global_known_hosts=target.global_known_hosts,
        record_file=target.record_file, hash_names=target.hash_known_hosts)


class _Route:
    """One connection attempt along a target's route; every hop pushes its closer."""

    def __init__(self, accept_new_host_key: bool, prompter: Prompter | None,
                 progress: Progress | None):
        self.accept_new = accept_new_host_key
        self.prompter = prompter
        self.progress = progress

    def _ask(self, question: str) -> str:
        assert self.prompter is not None
        return self.prompter.ask(question, echo=True)

    def session(self, target: Target) -> Session:
        closers: Closers = []
        try:
            sock, proxy_errors = _open_socket(target, self.session, closers)
            checker = host_key_checker(target)
            transport = start_transport(sock, target, checker, proxy_errors, closers)
            usable_prompter = self.prompter if not target.batch_mode else None
            note = checker.verify(
                transport.get_remote_server_key(), accept_new=self.accept_new,
                strict=target.strict_host_keys,
                ask=self._ask if usable_prompter is not None else None)
            if note and self.progress is not None:
                self.progress(note)
            authenticate(transport, target, usable_prompter)
            transport.set_keepalive(KEEPALIVE_SECONDS)
            closers.remove(transport.close)
            return Session(transport, target, closers)
        except BaseException:
            for closer in reversed(closers):
                with contextlib.suppress(Exception):  # already failing; keep the first error
                    closer()
            raise


def connect(
    endpoint: Endpoint,
    *,
    accept_new_host_key: bool = False,
    prompter: Prompter | None = None,
    progress: Progress | None = None,
) -> Session:
    """Open an authenticated, host-key-checked SSH session to `endpoint`.

    Settings come from OpenSSH's resolution of the endpoint (profile values
    win). Unknown host keys follow StrictHostKeyChecking; `accept_new_host_key`
    acts as accept-new on every hop; a changed key is always refused. Prompts
    (passphrases, one-time codes, passwords, an unknown host key under `ask`)
    go to `prompter`; without one they fail with one line. When the endpoint
    asks for it (`auth_retry_seconds`, a key just pushed to a VM), refused
    authentication is retried until that deadline.

    Raises HostKeyError, AuthenticationError or SSHError with one-line reasons.
    """
    target = resolve(endpoint)
    route = _Route(accept_new_host_key, prompter, progress)
    deadline = time.monotonic() + endpoint.auth_retry_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            return route.session(target)
        except AuthenticationError:
            if time.monotonic() >= deadline:
                raise
        except SSHError as exc:
            # A VM that just booted may not run sshd yet: retry within the deadline too.
            if time.monotonic() >= deadline or "host key" in exc.message:
                raise
        if progress is not None and attempt == 1:
            progress(f"waiting for {target.alias} to accept the SSH key")
        time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))
