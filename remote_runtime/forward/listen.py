"""The forwarder's listening sockets: loopback addresses only, all on one port.

`Forwarder` checks its bind hosts with `check_loopback` when it is made and
binds them all with `bind_listeners` when it starts; accepting stays in `forwarder`.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket

from ..errors import PortInUseError


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


def bind_listener(host: str, port: int) -> socket.socket | None:
    """Listen on host:port; None when an IPv6 loopback does not exist here.

    Raises:
        PortInUseError: the port is taken on ``host``.
        OSError: binding failed for another reason.
    """
    ipv6 = is_ipv6(host)
    try:
        listener = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET)
    except OSError:
        if ipv6:
            return None  # no IPv6 support at all
        raise
    try:
        # Lets us re-bind at once while old connections sit in TIME_WAIT;
        # on Linux it never lets two sockets listen on one port.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ipv6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind((host, port))
        listener.listen(socket.SOMAXCONN)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} is already in use on this machine ({host})",
                hint="stop whatever listens there or choose another port",
            ) from None
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
