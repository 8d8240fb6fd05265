"""One paramiko connection: config, agent, keys, strict host keys, keepalive.

`connect(endpoint)` resolves the endpoint against ~/.ssh/config (profile
values win), opens the socket (direct, ProxyCommand or ProxyJump), checks the
host key strictly (`hostkeys`), authenticates (agent, then key files, asking
for a passphrase only through the given prompt) and returns a `Session` that
runs commands. Only this module and `forwarder` import paramiko.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko

from .errors import AuthenticationError, SSHError
from .hostkeys import HostKeyChecker
from .providers import Endpoint, Progress
from .ssh_config import Target, resolve
from .ssh_proxy import ProxyCommandSocket, ReadAheadSocket

# aes128-gcm first: measured fastest in paramiko (DESIGN.md fact 6).
PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
KEEPALIVE_SECONDS = 15
CONNECT_TIMEOUT = 20.0

PassphrasePrompt = Callable[[Path], str]

# paramiko logs refused channels (a health poll before Jupyter listens) at
# ERROR; without a handler Python prints them on stderr. The CLI may attach a
# file handler; the terminal gets only our own messages.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


@dataclass
class CommandResult:
    status: int
    stdout: str
    stderr: str


class RemoteProcess:
    """A long-running remote command with line-based stdin/stdout."""

    def __init__(self, channel: paramiko.Channel):
        self._channel = channel
        self._file = channel.makefile("rb")
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        """Send one line to the process's stdin; raises SSHError if the channel is gone."""
        with self._lock:
            try:
                self._channel.sendall((line + "\n").encode())
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise SSHError(f"lost the remote process: {exc}") from None

    def read_line(self, timeout: float) -> str | None:
        """One line of stdout without its newline; None at end of output."""
        self._channel.settimeout(timeout)
        try:
            raw = self._file.readline()
        except TimeoutError:
            raise SSHError(f"no answer from the remote process within {timeout:.0f}s") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"lost the remote process: {exc}") from None
        if not raw:
            return None
        return bytes(raw).decode(errors="replace").rstrip("\n")

    @property
    def closed(self) -> bool:
        return self._channel.closed or self._channel.exit_status_ready()

    def read_stderr(self) -> str:
        chunks = []
        while self._channel.recv_stderr_ready():
            chunks.append(self._channel.recv_stderr(65536))
        return b"".join(chunks).decode(errors="replace")

    def close(self) -> None:
        self._channel.close()


class Session:
    """An authenticated SSH connection. Close it to release everything."""

    def __init__(
        self,
        transport: paramiko.Transport,
        target: Target,
        closers: list[Callable[[], None]],
    ):
        self.transport = transport
        self.target = target
        self._closers = closers

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def ping(self, timeout: float) -> bool:
        """Ask the server for an answer (keepalive@openssh.com) within `timeout`.

        paramiko's own keepalive wants no reply, so a path that silently
        drops packets (a sleeping laptop, a dead Wi-Fi) is only noticed here.
        """
        answered = threading.Event()

        def send() -> None:
            try:
                self.transport.global_request("keepalive@openssh.com", wait=True)
            except (OSError, EOFError, paramiko.SSHException):
                return
            answered.set()

        threading.Thread(target=send, name="ssh-ping", daemon=True).start()
        return answered.wait(timeout) and self.transport.is_active()

    def run(
        self, command: str, *, stdin: str | None = None, timeout: float = 60.0
    ) -> CommandResult:
        """Run `command` through the remote user's shell and wait for it.

        `command` must already be quoted (shlex.quote every value). Raises
        SSHError when the connection fails or the command outlives `timeout`.
        """
        try:
            channel = self.transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while not (channel.exit_status_ready() and not channel.recv_ready()
                       and not channel.recv_stderr_ready()):
                if time.monotonic() > deadline:
                    channel.close()
                    raise SSHError(f"remote command timed out after {timeout:.0f}s")
                if channel.recv_ready():
                    out += channel.recv(65536)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                else:
                    time.sleep(0.01)
            status = channel.recv_exit_status()
            channel.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"lost the SSH connection to {self.target.alias}: {exc}") from None
        return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))

    def start(self, command: str) -> RemoteProcess:
        """Start a long-running command whose stdin/stdout stay open."""
        try:
            channel = self.transport.open_session(timeout=30)
            channel.exec_command(command)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"lost the SSH connection to {self.target.alias}: {exc}") from None
        return RemoteProcess(channel)

    def close(self) -> None:
        """Close the transport, then any jump host and ProxyCommand (last)."""
        try:
            self.transport.close()
        finally:
            for closer in reversed(self._closers):
                with contextlib.suppress(Exception):  # best effort on teardown
                    closer()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load_key(path: Path, prompt: PassphrasePrompt | None) -> paramiko.PKey | None:
    if not path.is_file():
        return None
    try:
        return paramiko.PKey.from_path(str(path))
    except paramiko.PasswordRequiredException:
        if prompt is None:
            raise AuthenticationError(
                f"key {path} is encrypted and there is no terminal to ask for its passphrase",
                hint=f"add it to ssh-agent (ssh-add {path}) or run from a terminal",
            ) from None
        for _ in range(3):
            passphrase = prompt(path)
            try:
                return paramiko.PKey.from_path(str(path), passphrase)
            except paramiko.SSHException:
                continue
        raise AuthenticationError(f"wrong passphrase for {path}") from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise AuthenticationError(f"cannot load key {path}: {exc}") from None


def _authenticate(
    transport: paramiko.Transport, target: Target, prompt: PassphrasePrompt | None
) -> None:
    tried: list[str] = []
    keys: list[tuple[str, paramiko.PKey]] = []
    if not target.identities_only:
        with contextlib.suppress(paramiko.SSHException):  # no agent running
            keys.extend(("agent key", k) for k in paramiko.Agent().get_keys())
    for path in target.identity_files:
        key = _load_key(path, prompt)
        if key is not None:
            keys.append((str(path), key))
    for label, key in keys:
        try:
            transport.auth_publickey(target.user, key)
        except paramiko.AuthenticationException:
            tried.append(label)
            continue
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"SSH connection to {target.alias} failed during login: {exc}") from None
        if transport.is_authenticated():
            return
    what = ", ".join(tried) if tried else "no key found"
    raise AuthenticationError(
        f"{target.user}@{target.hostname} refused every key ({what})",
        hint="check ssh.user and ssh.identity_file in the profile, or load the key into ssh-agent",
    )


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
        transport = paramiko.Transport(stream)
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
        _authenticate(transport, target, prompt)
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


def quote(value: str) -> str:
    """Quote one value for the remote POSIX shell."""
    return shlex.quote(value)
