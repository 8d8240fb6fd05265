"""Taken-port detection on each OS (remote_runtime/forward/listen.py)."""

from __future__ import annotations

import errno
import socket

import pytest
from support.net import free_port

from remote_runtime.errors import PortInUseError
from remote_runtime.forward import listen


@pytest.mark.parametrize(("platform", "kind"), [
    ("linux", "linux"), ("darwin", "bsd"), ("freebsd14", "bsd"), ("openbsd7", "bsd"),
    ("win32", "windows"), ("cygwin", "linux"),
])
def test_semantics(platform: str, kind: str) -> None:
    assert listen.semantics(platform) == kind


def test_socket_options_per_os() -> None:
    reuse = (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    assert listen.socket_options("linux") == [reuse]
    assert listen.socket_options("bsd") == [reuse]
    # Windows: SO_REUSEADDR would let us bind over a live listener; exclusive use instead.
    windows = listen.socket_options("windows")
    assert windows == [(socket.SOL_SOCKET, listen.SO_EXCLUSIVEADDRUSE, 1)]
    assert listen.SO_EXCLUSIVEADDRUSE == ~4  # winsock: ~SO_REUSEADDR, SO_REUSEADDR being 4


def test_windows_counts_access_denied_as_taken() -> None:
    assert listen.in_use_errors("linux") == {errno.EADDRINUSE}
    windows = listen.in_use_errors("windows")
    assert {errno.EADDRINUSE, 10048, 10013} <= windows  # WSAEADDRINUSE, WSAEACCES


def test_answers_sees_a_listener_and_nothing_else() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert listen.answers("127.0.0.1", port)
    assert not listen.answers("127.0.0.1", port)
    assert not listen.answers("::1", free_port())


def test_bsd_probes_before_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """On macOS the bind would succeed beside a listener on *:P; the probe refuses it."""
    port = free_port()
    probed: list[tuple[str, int]] = []

    def someone_listens(host: str, p: int) -> bool:
        probed.append((host, p))
        return True

    monkeypatch.setattr(listen, "answers", someone_listens)
    with pytest.raises(PortInUseError, match=f"port {port} is already in use"):
        listen.bind_listener("127.0.0.1", port, kind="bsd")
    assert probed == [("127.0.0.1", port)]
    sock = listen.bind_listener("127.0.0.1", port, kind="linux")  # no probe there
    assert sock is not None and probed == [("127.0.0.1", port)]
    sock.close()


def test_a_real_listener_is_refused_with_either_semantics() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # tests listen on loopback only
        port = server.getsockname()[1]
        for kind in ("linux", "bsd"):
            with pytest.raises(PortInUseError):
                listen.bind_listener("127.0.0.1", port, kind=kind)
