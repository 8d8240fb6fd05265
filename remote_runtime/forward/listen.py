"""The forwarder's listening sockets: loopback addresses only, all on one port.

`Forwarder` checks its bind hosts with `check_loopback` when it is made and
binds them all with `bind_listeners` when it starts; accepting stays in `forwarder`.

A port someone else holds must be refused on every OS, and each OS needs its own way
to see that (`SEMANTICS`):
- linux: SO_REUSEADDR (re-bind over TIME_WAIT) never lets two sockets listen on one
  port, so the bind itself fails.
- bsd (macOS, *BSD): SO_REUSEADDR lets 127.0.0.1:P bind while another process listens
  on *:P, and would take its loopback traffic; a connect probe finds that listener first.
- windows: SO_REUSEADDR would let us bind over an active listener, so it is never set;
  SO_EXCLUSIVEADDRUSE makes the bind fail on any socket on the port. Windows also
  answers WSAEACCES for ports reserved by the system (Hyper-V, WSL): taken too.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
from typing import Any

from ..errors import PortInUseError

SO_EXCLUSIVEADDRUSE = getattr(socket, "SO_EXCLUSIVEADDRUSE", -5)  # ~SO_REUSEADDR, Windows only
PROBE_TIMEOUT = 0.5  # a listener on loopback answers at once


def semantics(platform: str = sys.platform) -> str:
    """How this OS's sockets share a port: "linux", "bsd" or "windows"."""
    if platform == "win32":
        return "windows"
    if platform == "darwin" or "bsd" in platform or platform.startswith("dragonfly"):
        return "bsd"
    return "linux"


SEMANTICS = semantics()


def socket_options(kind: str) -> list[tuple[int, int, int]]:
    """(level, option, value) to set on a listener before its bind, per `semantics()`."""
    if kind == "windows":
        return [(socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1)]
    return [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]


def in_use_errors(kind: str) -> set[int]:
    """The bind errors that mean "another socket holds the port"."""
    codes = {errno.EADDRINUSE}
    if kind == "windows":
        codes |= {errno.EACCES, getattr(errno, "WSAEACCES", 10013),
                  getattr(errno, "WSAEADDRINUSE", 10048)}
    return codes


def answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does something accept connections on host:port?"""
    family = socket.AF_INET6 if is_ipv6(host) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect((host, port))
        except OSError:
            return False
    return True


def check_loopback(hosts: tuple[str, ...]) -> None:
    """Raise ValueError unless ``hosts`` is a non-empty tuple of loopback IP addresses."""
    if not hosts:
        raise ValueError("bind_hosts must name at least one loopback address")
    for host in hosts:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"bind host {host!r} is not an IP address") from None
        if not address.is_loopback:
            raise ValueError(f"refusing to listen on {host}: only loopback addresses are allowed")


def is_ipv6(host: str) -> bool:
    return ipaddress.ip_address(host).version == 6


def _in_use(host: str, port: int) -> PortInUseError:
    return PortInUseError(
        f"port {port} is already in use on this machine ({host})",
        hint="stop whatever listens there or choose another port",
    )


def bind_listener(host: str, port: int, *, kind: str = SEMANTICS) -> socket.socket | None:
    """Listen on host:port; None when an IPv6 loopback does not exist here.

    `kind` is the OS's port-sharing semantics (module docstring).

    Raises:
        PortInUseError: the port is taken on ``host``.
        OSError: binding failed for another reason.
    """
    ipv6 = is_ipv6(host)
    if kind == "bsd" and port and answers(host, port):
        raise _in_use(host, port)
    try:
        listener = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET)
    except OSError:
        if ipv6:
            return None  # no IPv6 support at all
        raise
    try:
        for level, option, value in socket_options(kind):
            listener.setsockopt(level, option, value)
        if ipv6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind((host, port))
        listener.listen(socket.SOMAXCONN)
    except OSError as exc:
        listener.close()
        if exc.errno in in_use_errors(kind):
            raise _in_use(host, port) from None
        if ipv6 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return None  # IPv6 disabled, or no ::1 on lo
        raise
    return listener


def bind_listeners(
    hosts: tuple[str, ...], port: int
) -> tuple[int, list[tuple[str, socket.socket]]]:
    """Listen on every host in ``hosts`` at one port; port 0 picks a free one for all.

    Returns:
        The port, and a (host, listener) pair per host bound (an IPv6 host is
        skipped where this machine has no IPv6 loopback).

    Raises:
        PortInUseError: the port is taken on one of the hosts (with port 0: still
            so after a few tries).
        OSError: none of the hosts can be bound, or binding failed for another reason.
    """
    # IPv4 first: it is mandatory, and with port 0 it decides the port for the rest.
    ordered = sorted(hosts, key=is_ipv6)
    attempts = 5 if port == 0 else 1
    bound: list[tuple[str, socket.socket]] = []
    for attempt in range(attempts):
        chosen = port
        try:
            for host in ordered:
                listener = bind_listener(host, chosen)
                if listener is None:
                    continue
                bound.append((host, listener))
                chosen = int(listener.getsockname()[1])
        except PortInUseError:
            _close_all(bound)
            if attempt + 1 == attempts:
                raise
            continue
        except BaseException:
            _close_all(bound)
            raise
        port = chosen
        break
    if not bound:
        raise OSError(errno.EADDRNOTAVAIL, f"none of {', '.join(hosts)} can be bound")
    return port, bound


def _close_all(bound: list[tuple[str, socket.socket]]) -> None:
    for _, listener in bound:
        with contextlib.suppress(OSError):
            listener.close()
    bound.clear()


def accept(listener: socket.socket, family: int) -> tuple[socket.socket, Any]:
    """`listener.accept()` without its per-call IntEnum conversions of the family and
    type (about 3% of a new connection's CPU in the forwarder): CPython's own accept
    is `_accept()` (the descriptor and address) wrapped in a socket object."""
    raw = getattr(listener, "_accept", None)
    if raw is None:  # not CPython's socket module
        return listener.accept()
    fd, peer = raw()
    return socket.socket(family, socket.SOCK_STREAM, 0, fileno=fd), peer
