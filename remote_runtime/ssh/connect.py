"""Open an authenticated, host-key-checked SSH session to an endpoint.

`connect(endpoint)` resolves the endpoint against ~/.ssh/config (profile
values win), opens the byte stream (direct, ProxyCommand or ProxyJump), checks
the host key strictly (`hostkeys`), authenticates (`auth`) and returns a
`Session`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import replace

import paramiko

from ..errors import AuthenticationError, SSHError
from ..options import Progress
from .auth import PassphrasePrompt, authenticate
from .config import Target, resolve
from .endpoint import Endpoint
from .hostkeys import HostKeyChecker
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


def _open_socket(
    target: Target,
    accept_new_host_key: bool,
    prompt: PassphrasePrompt | None,
    closers: list[Callable[[], None]],
) -> tuple[socket.socket | paramiko.Channel, Callable[[], str]]:
    """The byte stream to the SSH server, and a function describing proxy errors."""
    if target.proxy_command:
        proxy = ProxyCommandSocket(target.proxy_command)
        closers.append(proxy.close)
        return proxy.sock, proxy.failure_detail
    if target.proxy_jump:
        first, _, rest = target.proxy_jump.partition(",")
        user, _, hostport = first.rpartition("@")
        host, _, port = hostport.partition(":")
        jump_endpoint = Endpoint(
            host=host, port=int(port) if port.isdigit() else None, user=user or None,
            proxy_jump=rest or None,
        )
        jump = connect(jump_endpoint, accept_new_host_key=accept_new_host_key,
                       passphrase_prompt=prompt)
        closers.append(jump.close)
        try:
            channel = jump.transport.open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0),
                timeout=CONNECT_TIMEOUT,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise SSHError(
                f"jump host {first} could not reach {target.hostname}:{target.port}: {exc}"
            ) from None
        return channel, lambda: ""
    try:
        sock = socket.create_connection((target.hostname, target.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise SSHError(
            f"cannot reach {target.hostname}:{target.port}: {exc.strerror or exc}"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, lambda: ""


def _handshake(
    target: Target,
    endpoint: Endpoint,
    accept_new_host_key: bool,
    prompt: PassphrasePrompt | None,
) -> Session:
    closers: list[Callable[[], None]] = []
    try:
        sock, proxy_errors = _open_socket(target, accept_new_host_key, prompt, closers)
        checker = HostKeyChecker(target.host_key_name, target.known_hosts,
                                 trusted=endpoint.trusted_host_keys)
        # A real socket (direct or ProxyCommand's socketpair) gets read-ahead;
        # a jump host's channel already buffers.
        stream = ReadAheadSocket(sock) if isinstance(sock, socket.socket) else sock
        # Both are socket-like; paramiko's stubs name only its own types.
        transport = paramiko.Transport(stream)  # type: ignore[arg-type]
        closers.insert(0, transport.close)
        options = transport.get_security_options()
        options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in options.ciphers) + tuple(
            c for c in options.ciphers if c not in PREFERRED_CIPHERS
        )
        options.key_types = checker.preferred_key_types(options.key_types)
        try:
            transport.start_client(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            detail = proxy_errors()
            reason = str(exc) or type(exc).__name__  # EOFError() has no text
            raise SSHError(
                f"SSH handshake with {target.alias} failed: "
                + (f"{detail} ({reason})" if detail else reason)
            ) from None
        checker.verify(transport.get_remote_server_key(), accept_new=accept_new_host_key)
        authenticate(transport, target, prompt)
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
    passphrase_prompt: PassphrasePrompt | None = None,
    progress: Progress | None = None,
) -> Session:
    """Open an authenticated, host-key-checked SSH session to `endpoint`.

    Unknown host keys are refused unless `accept_new_host_key` (then recorded,
    like OpenSSH's accept-new); a changed key is always refused. When the
    endpoint asks for it (`auth_retry_seconds`, a key just pushed to a VM),
    refused authentication is retried until that deadline.

    Raises HostKeyError, AuthenticationError or SSHError with one-line reasons.
    """
    target = resolve(endpoint)
    deadline = time.monotonic() + endpoint.auth_retry_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            return _handshake(target, endpoint, accept_new_host_key, passphrase_prompt)
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
        # After the first accepted host key, do not keep asking to accept again.
        endpoint = replace(endpoint)
