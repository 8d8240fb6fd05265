"""The sandbox host: a real sshd, a namespace as a second host, the pip egress, cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.env import require_netns_sandbox, require_sshd, unavailable
from support.net import free_port
from support.procs import alive

from remote_runtime import profiles
from sandbox import Sandbox, SandboxError, netns, to_yaml
from sandbox.common import find_binary
from sandbox.proxy import ConnectProxy
from sandbox.sshd import Sshd, answers_ssh

SERVE_ONCE = (
    "import socket, sys\n"
    "s = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "print('bound', flush=True)\n"
    "c, _ = s.accept(); c.sendall(sys.argv[3].encode()); c.close()\n"
)
# A remote process that outlives its session, as a detached Jupyter would.
DETACHED_SLEEP = "setsid nohup sleep 300 >/dev/null 2>&1 < /dev/null &"


def require_openssh() -> None:
    """sshd, and the OpenSSH client these tests compare against."""
    require_sshd()
    try:
        find_binary("ssh", hint="")
    except SandboxError as exc:
        unavailable(f"OpenSSH client missing ({exc.message}); install openssh-client")


def require_netns() -> None:
    require_openssh()
    require_netns_sandbox()


def ssh_argv(sandbox: Sandbox, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    """A plain OpenSSH client command line for the sandbox's profile, strict host keys."""
    prof = sandbox.profile()["ssh"]
    settings = {
        "BatchMode": "yes",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": prof["known_hosts"],
        "GlobalKnownHostsFile": "/dev/null",
        "IdentitiesOnly": "yes",
    }
    if "proxy_command" in prof:
        settings["ProxyCommand"] = prof["proxy_command"]
    argv = ["ssh", "-F", "/dev/null", "-i", prof["identity_file"], "-p", str(prof["port"])]
    for key, value in settings.items():
        argv += ["-o", f"{key}={value}"]
    return [*argv, *options, "-l", prof["user"], prof["host"], *command]


def ssh(sandbox: Sandbox, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ssh_argv(sandbox, *command), capture_output=True, text=True, timeout=30, check=False
    )


@contextlib.contextmanager
def serve_once(argv_prefix: list[str], host: str, port: int, text: str) -> Iterator[None]:
    """A one-shot TCP server process (optionally wrapped, e.g. in `ip netns exec`)."""
    proc = subprocess.Popen(
        [*argv_prefix, sys.executable, "-c", SERVE_ONCE, host, str(port), text],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "bound"
        yield
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def netns_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_netns()
    with Sandbox(
        tmp_path_factory.mktemp("netns-sandbox"),
        mode="netns",
        remote_cache_dir=tmp_path_factory.mktemp("remote-cache"),
    ) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def loopback_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_openssh()
    with Sandbox(
        tmp_path_factory.mktemp("loopback-sandbox"),
        mode="loopback-alias",
        remote_cache_dir=tmp_path_factory.mktemp("remote-cache-lo"),
    ) as sandbox:
        yield sandbox


# --- netns mode ---------------------------------------------------------------------------


@pytest.mark.integration
def test_ssh_login_through_proxy_command(netns_sandbox: Sandbox) -> None:
    result = ssh(netns_sandbox, "echo hello; echo $https_proxy; echo $XDG_CACHE_HOME")
    assert result.returncode == 0, result.stderr
    hello, proxy, cache = result.stdout.split("\n")[:3]
    assert hello == "hello"
    assert proxy == netns_sandbox.https_proxy
    assert cache == str(netns_sandbox.remote_cache_dir)
    assert netns_sandbox.remote_bind_host == "127.0.0.1"


@pytest.mark.integration
def test_same_port_on_two_hosts(netns_sandbox: Sandbox) -> None:
    assert netns_sandbox.namespace is not None
    inside = netns_sandbox.namespace.argv([])
    port = free_port()
    with serve_once([], "127.0.0.1", port, "host"), serve_once(inside, "127.0.0.1", port, "remote"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert conn.recv(100) == b"host"
        # The namespace's server, reached the way the tool's tunnel will: through its sshd.
        tunnel = subprocess.run(
            ssh_argv(netns_sandbox, options=("-W", f"127.0.0.1:{port}")),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        assert tunnel.stdout == b"remote", tunnel.stderr


@pytest.mark.integration
def test_namespace_has_no_network_of_its_own(netns_sandbox: Sandbox) -> None:
    probe = "import socket; socket.create_connection(('pypi.org', 443), timeout=3)"
    result = netns_sandbox.run([sys.executable, "-c", probe], timeout=30)
    assert result.returncode != 0


@pytest.mark.integration
def test_pip_download_through_the_proxy(netns_sandbox: Sandbox, tmp_path: Path) -> None:
    # Only the real index, only through the proxy: no local find-links or file:// indexes.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "HTTP"))}
    env.update(https_proxy=netns_sandbox.https_proxy or "", PIP_CONFIG_FILE=os.devnull)
    argv = [sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--retries", "1"]
    argv += ["--index-url", "https://pypi.org/simple", "-d", str(tmp_path), "six"]
    if os.environ.get("PIP_CERT"):
        argv += ["--cert", os.environ["PIP_CERT"]]
    result = netns_sandbox.run(argv, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.glob("six-*.whl"))
    assert netns_sandbox.proxy is not None
    assert "allow pypi.org:443" in netns_sandbox.proxy.events


@pytest.mark.integration
def test_kill_sessions_drops_the_connection(netns_sandbox: Sandbox) -> None:
    client = subprocess.Popen(ssh_argv(netns_sandbox, "sleep 60"), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not netns_sandbox.session_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = netns_sandbox.kill_sessions()
        assert killed
        assert client.wait(timeout=10) == 255
    finally:
        client.kill()
        client.wait()


@pytest.mark.integration
def test_close_leaves_nothing_behind(tmp_path: Path) -> None:
    require_netns()
    sandbox = Sandbox(tmp_path / "sb", mode="netns", remote_cache_dir=tmp_path / "cache")
    with sandbox:
        assert sandbox.namespace is not None and sandbox.relay is not None
        name, relay_pid = sandbox.namespace.name, sandbox.relay.pid
        assert relay_pid is not None and alive(relay_pid)
        socket_path = sandbox.proxy.socket_path if sandbox.proxy else None
        client = subprocess.Popen(ssh_argv(sandbox, "sleep 60"), stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (sessions := sandbox.session_pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sessions
        assert ssh(sandbox, DETACHED_SLEEP).returncode == 0
        remote = sandbox.remote_pids()
        assert remote
        sshd = sandbox.sshd
        assert sshd is not None
    try:
        assert client.wait(timeout=10) == 255  # its sshd is gone
    finally:
        client.kill()
        client.wait()
    assert name not in netns.list_names()
    assert not alive(relay_pid)
    assert not [pid for pid in sessions + remote if alive(pid)]
    assert sshd.session_pids() == []
    assert socket_path is not None and not socket_path.exists()


@pytest.mark.integration
def test_demo_entry_point_writes_profiles_and_cleans_up(tmp_path: Path) -> None:
    require_openssh()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--write-profiles", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines[0].startswith("sandbox mode: "), [
        *lines,
        proc.stderr.read() if proc.stderr else "",
    ]
    mode = lines[0].split()[2]
    assert "ready" in lines[2]
    running = set(netns.list_names()) if mode == "netns" else set()
    loaded = profiles.load(tmp_path / "profiles.yaml").get("sandbox")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert loaded.ssh is not None
    if mode == "netns":
        assert loaded.ssh.proxy_command and "netns exec" in loaded.ssh.proxy_command
        name = loaded.ssh.proxy_command.split()[3]
        assert name in running
        assert name not in netns.list_names()
    else:
        assert loaded.jupyter.bind_host == "127.0.0.2"


# --- loopback-alias mode ------------------------------------------------------------------


@pytest.mark.integration
def test_loopback_alias_login_restart_and_same_port(loopback_sandbox: Sandbox) -> None:
    prof = loopback_sandbox.profile()
    assert prof["ssh"]["host"] == "127.0.0.1" and "proxy_command" not in prof["ssh"]
    assert prof["jupyter"]["bind_host"] == loopback_sandbox.remote_bind_host == "127.0.0.2"
    assert ssh(loopback_sandbox, "echo hello").stdout == "hello\n"

    port = loopback_sandbox.profile()["ssh"]["port"]
    loopback_sandbox.restart_sshd()
    assert loopback_sandbox.profile()["ssh"]["port"] == port
    assert ssh(loopback_sandbox, "echo again").stdout == "again\n"

    jupyter_port = free_port()
    local = serve_once([], "127.0.0.1", jupyter_port, "local")
    remote = serve_once([], "127.0.0.2", jupyter_port, "remote")
    with local, remote:
        tunnel = subprocess.run(
            ssh_argv(loopback_sandbox, options=("-W", f"127.0.0.2:{jupyter_port}")),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        assert tunnel.stdout == b"remote", tunnel.stderr
        with socket.create_connection(("127.0.0.1", jupyter_port), timeout=5) as conn:
            assert conn.recv(100) == b"local"


@pytest.mark.integration
def test_sshd_listen_mode_api(tmp_path: Path) -> None:
    require_openssh()
    with Sshd(tmp_path, listen=("127.0.0.1", 0), set_env={"GREETING": "hi there"}) as sshd:
        assert sshd.port and answers_ssh("127.0.0.1", sshd.port)
        assert sshd.proxy_command is None
        assert sshd.host_key_line.startswith("ssh-ed25519 AAAA")
        assert sshd.known_hosts_line("127.0.0.1") == f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}"
        assert sshd.client_key.with_suffix(".pub").exists()
        assert 'SetEnv "GREETING=hi there"' in sshd.config_path.read_text()
        port = sshd.port
    assert not answers_ssh("127.0.0.1", port)


# --- no root needed -----------------------------------------------------------------------


def _ask(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(request)
        return conn.recv(4096)


def test_proxy_refuses_everything_but_the_index(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    with ConnectProxy(path) as proxy:
        for request in (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            b"CONNECT pypi.org:80 HTTP/1.1\r\n\r\n",
            b"CONNECT pypi.org.evil.test:443 HTTP/1.1\r\n\r\n",
            b"GET http://pypi.org/simple/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n",
        ):
            assert _ask(path, request).startswith(b"HTTP/1.1 403 "), request
        assert "deny example.com:443" in proxy.events
    assert not path.exists()


def test_proxy_pipes_an_allowed_connect(tmp_path: Path) -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]

    def echo_once() -> None:
        conn, _ = upstream.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())

    thread = threading.Thread(target=echo_once, daemon=True)
    thread.start()
    path = tmp_path / "p.sock"
    allowed = frozenset({("127.0.0.1", port)})
    with upstream, ConnectProxy(path, allowed=allowed), socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nping".encode())
        data = b""
        while b"PING" not in data:
            chunk = conn.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
    thread.join(timeout=5)


def test_to_yaml_round_trips() -> None:
    data = {"profiles": {"sandbox": {"ssh": {"host": "a b", "port": 22, "cmd": 'x "y" \\z'}}}}
    assert yaml.safe_load(to_yaml(data)) == data


def test_loopback_mode_is_chosen_explicitly_without_root_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        Sandbox(tmp_path, mode="bogus")


def test_netns_mode_requested_but_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netns, "unavailable_reason", lambda: "network namespaces need root")
    with pytest.raises(SandboxError, match="need root"):
        Sandbox(tmp_path, mode="netns").start()


@pytest.mark.integration
def test_auto_mode_falls_back_to_loopback_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_openssh()
    monkeypatch.setattr(netns, "unavailable_reason", lambda: "network namespaces need root")
    with Sandbox(tmp_path / "sb", remote_cache_dir=tmp_path / "cache") as sandbox:
        assert sandbox.mode == "loopback-alias"
        assert sandbox.remote_bind_host == "127.0.0.2"
        assert ssh(sandbox, DETACHED_SLEEP).returncode == 0
        remote = sandbox.remote_pids()
        assert remote
    assert not [pid for pid in remote if alive(pid)]
