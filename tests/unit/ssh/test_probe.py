"""`ssh.probe`: `connect` step by step for the doctor, against a real paramiko server
(mockssh) and real sockets: the stream and the server's banner (peeked, not consumed),
the handshake, the host key judged but never recorded, the login's report."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import mockssh
import paramiko
import pytest
from support.net import free_port

from remote_runtime.errors import SSHError
from remote_runtime.ssh import Endpoint, config, probe

pytestmark = pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")

MOCKSSH_DIR = Path(mockssh.__file__).parent
USER_KEY = MOCKSSH_DIR / "sample-user-key"
SERVER_KEY_B64 = paramiko.RSAKey(filename=str(MOCKSSH_DIR / "server-key")).get_base64()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[mockssh.Server]:
    monkeypatch.chdir(tmp_path)
    with mockssh.Server({"alice": str(USER_KEY)}) as running:
        yield running


def target(server: mockssh.Server, tmp_path: Path, *, known: str | None = "right",
           key: Path = USER_KEY) -> config.Target:
    known_hosts = tmp_path / "known_hosts"
    if known == "right":
        known_hosts.write_text(f"[127.0.0.1]:{server.port} ssh-rsa {SERVER_KEY_B64}\n")
    elif known == "other":
        other = paramiko.RSAKey.generate(1024).get_base64()
        known_hosts.write_text(f"[127.0.0.1]:{server.port} ssh-rsa {other}\n")
    else:
        known_hosts.write_text("")
    return config.resolve(Endpoint(host="127.0.0.1", port=server.port, user="alice",
                                   identity_file=key, known_hosts=known_hosts),
                          force_fallback=True)


def test_the_banner_is_peeked_and_the_walk_ends_in_a_session(server: mockssh.Server,
                                                             tmp_path: Path) -> None:
    link = probe.reach(target(server, tmp_path))
    try:
        assert link.banner.startswith("SSH-2.0-")
        assert link.how == f"TCP 127.0.0.1 port {server.port}"
        shake = probe.handshake(link)  # the banner was not consumed: the handshake works
        assert shake.host_key.verdict.status == "known"
        assert shake.host_key.refusal is None
        login = probe.login(shake)
        assert login.ok and login.accepted == [str(USER_KEY)]
        assert "publickey" in login.allowed
        session = probe.session(shake)
    except BaseException:
        link.close()
        raise
    with session:
        assert session.run("echo hi").stdout == "hi\n"


def test_changed_and_unknown_host_keys_are_judged_and_never_recorded(
        server: mockssh.Server, tmp_path: Path) -> None:
    for known, status in (("other", "changed"), (None, "unknown")):
        resolved = target(server, tmp_path, known=known)
        before = (tmp_path / "known_hosts").read_text()
        link = probe.reach(resolved)
        try:
            key = probe.handshake(link).host_key
        finally:
            link.close()
        assert key.verdict.status == status
        assert key.fingerprint.startswith("SHA256:") and key.key_type == "ssh-rsa"
        assert (key.refusal is not None) == (status == "changed")
        if status == "changed":
            assert "HOST KEY CHANGED" in key.refusal.message  # type: ignore[union-attr]
        assert key.record_file == str(tmp_path / "known_hosts")
        assert (tmp_path / "known_hosts").read_text() == before


def test_a_refused_key_is_reported_not_raised(server: mockssh.Server, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    paramiko.RSAKey.generate(1024).write_private_key_file(str(other))
    link = probe.reach(target(server, tmp_path, key=other))
    try:
        login = probe.login(probe.handshake(link))
    finally:
        link.close()
    assert not login.ok and login.error is not None
    assert str(other) in login.refused and login.accepted == []
    assert login.offered[0] == str(other)
    assert "refused every key" in login.error.message


def test_a_closed_port_is_refused(tmp_path: Path) -> None:
    port = free_port()
    resolved = config.resolve(Endpoint(host="127.0.0.1", port=port, user="alice",
                                       known_hosts=tmp_path / "kh"), force_fallback=True)
    with pytest.raises(SSHError, match=rf"cannot connect to 127.0.0.1 port {port} .*refused"):
        probe.reach(resolved)


def test_something_that_is_not_ssh_is_named(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):  # the client hangs up at once
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.recv(100)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        resolved = config.resolve(Endpoint(host="127.0.0.1", port=port, user="alice",
                                           known_hosts=tmp_path / "kh"), force_fallback=True)
        with pytest.raises(SSHError, match=r"not an SSH server.*HTTP/1\.1 400"):
            probe.reach(resolved)
        thread.join(timeout=5)


def test_peek_leaves_the_bytes_and_skips_lines_before_the_identification() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"Welcome to the lab\r\nSSH-2.0-OpenSSH_9.6\r\n")
        assert probe.peek_banner(ours, timeout=5) == "SSH-2.0-OpenSSH_9.6"
        assert ours.recv(100).startswith(b"Welcome")  # still there for paramiko


def test_peek_gives_up_quietly_on_a_silent_server() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert probe.peek_banner(ours, timeout=0.2) == ""
        theirs.close()
        with pytest.raises(SSHError, match="closed before the server said anything"):
            probe.peek_banner(ours, timeout=2)


def test_names_that_do_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with pytest.raises(SSHError, match=r"cannot resolve lab\.example: Name or service not known"):
        probe.addresses("lab.example", 22)
