"""Local ports for tests: a range per test file, whether a port is closed, IPv6 loopback."""

from __future__ import annotations

import itertools
import socket


class PortRange:
    """Ports from `first` to `last` that nothing on this machine holds, each handed out
    once per run (so no TIME_WAIT of an earlier test is in the way)."""

    def __init__(self, first: int, last: int) -> None:
        self._ports = itertools.count(first)
        self.last = last

    def take(self) -> int:
        for port in self._ports:
            if port > self.last:
                break
            try:
                with socket.create_server(("127.0.0.1", port)):
                    return port
            except OSError:
                continue
        raise AssertionError("no free port left in this file's range")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on `host` a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_closed(port: int, host: str = "127.0.0.1") -> bool:
    """True when a connection to host:port is refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return host == "::1"  # no IPv6 loopback here: nothing can listen on it
        return False


def has_ipv6_loopback() -> bool:
    """Can something listen on ::1 here (IPv6 loopback present)?"""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
