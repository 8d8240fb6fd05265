"""SSH as OpenSSH does it, against real OpenSSH sshds on loopback (ports 21000-21999):
ProxyJump hops in order with each hop's host key checked, a keyboard-interactive
one-time-code challenge (PAM, Google Authenticator) answered through a terminal,
agents and certificates, and known_hosts written where and how OpenSSH writes it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import totp
from support.cli import assert_one_error_line, cli_argv, cli_env, run_cli
from support.env import REPO_ROOT, SANDBOX_REMOTE_CACHE, require_sshd, unavailable
from support.net import PortRange, port_closed
from support.remote import write_profiles

from remote_runtime import ssh
from remote_runtime.errors import AuthenticationError, HostKeyError
from remote_runtime.ssh.hostkeys import host_matches
from sandbox import MARKER_ENV
from sandbox.common import kill_and_wait, pids_with_env
from sandbox.sshd import Sshd

PORTS = PortRange(21000, 21999)
ROOT_LOGIN = "PermitRootLogin yes\nLogLevel DEBUG1\n"


def require_root() -> None:
    require_sshd()
    if os.geteuid() != 0:
        unavailable("these sshds need root (PAM stacks, their own mount namespace)")


def start_sshd(workdir: Path, client_key: Path | None = None, **kwargs: object) -> Sshd:
    """A listening sshd on 127.0.0.1 with its own host key, accepting `client_key`."""
    workdir.mkdir(parents=True, exist_ok=True)
    if client_key is not None:
        for suffix in ("", ".pub"):
            shutil.copy(str(client_key) + suffix, workdir / f"id_ed25519{suffix}")
    extra = ROOT_LOGIN + str(kwargs.pop("extra_config", ""))
    server = Sshd(workdir, listen=("127.0.0.1", PORTS.take()), extra_config=extra,
                  **kwargs)  # type: ignore[arg-type]
    server.start()
    return server


def name(server: Sshd) -> str:
    return f"[127.0.0.1]:{server.port}"


def endpoint(server: Sshd, known: Path, **overrides: object) -> ssh.Endpoint:
    values: dict[str, object] = {"host": "127.0.0.1", "port": server.port,
                                 "user": server.user, "identity_file": server.client_key,
                                 "known_hosts": known}
    values.update(overrides)
    return ssh.Endpoint(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sshd]]:
    """Three sshds: two jump hosts and a target, one client key, three host keys."""
    require_root()
    base = tmp_path_factory.mktemp("hops")
    servers: list[Sshd] = []
    try:
        first = start_sshd(base / "a")
        servers = [first, start_sshd(base / "b", first.client_key),
                   start_sshd(base / "t", first.client_key)]
        yield servers
    finally:
        for server in servers:
            server.close()


def forwarded_to(server: Sshd) -> list[int]:
    """Ports this sshd opened direct-tcpip channels to (its debug log)."""
    ports = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "server_request_direct_tcpip" in line and "target 127.0.0.1 port" in line:
            ports.append(int(line.rsplit("port", 1)[1].split()[0].strip(",")))
    return ports


def write_ssh_config(text: str) -> None:
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "config").write_text(text)


def hop_config(hops: list[Sshd]) -> None:
    a, b, _ = hops
    write_ssh_config(
        f"Host hop-a\n  HostName 127.0.0.1\n  Port {a.port}\n  IdentityFile {a.client_key}\n"
        f"Host hop-b\n  HostName 127.0.0.1\n  Port {b.port}\n  IdentityFile {a.client_key}\n")


# --- ProxyJump -----------------------------------------------------------------------------


def test_proxy_jump_walks_the_hops_in_order(hops: list[Sshd], tmp_path: Path) -> None:
    a, b, target = hops
    hop_config(hops)
    known = tmp_path / "known_hosts"
    known.write_text("".join(s.known_hosts_line("127.0.0.1") + "\n" for s in hops))
    before_a, before_b = len(forwarded_to(a)), len(forwarded_to(b))
    with ssh.connect(endpoint(target, known, proxy_jump="hop-a,hop-b")) as session:
        assert session.run("echo through").stdout == "through\n"
    # hop-a carried the connection to hop-b, hop-b the one to the target.
    assert forwarded_to(a)[before_a:] == [b.port]
    assert forwarded_to(b)[before_b:] == [target.port]


def test_each_hops_host_key_is_checked(hops: list[Sshd], tmp_path: Path) -> None:
    a, b, target = hops
    hop_config(hops)
    known = tmp_path / "known_hosts"
    wrong = start_sshd(tmp_path / "other")  # another host key, for hop-b's name
    try:
        impostor = wrong.host_key_line
    finally:
        wrong.close()
    known.write_text(f"{a.known_hosts_line('127.0.0.1')}\n{name(b)} {impostor}\n"
                     f"{target.known_hosts_line('127.0.0.1')}\n")
    with pytest.raises(HostKeyError, match=rf"HOST KEY CHANGED for \[127.0.0.1\]:{b.port}"):
        ssh.connect(endpoint(target, known, proxy_jump="hop-a,hop-b"))
    # An unknown hop is refused too, and accepted (recorded) only when asked.
    known.write_text(f"{target.known_hosts_line('127.0.0.1')}\n")
    with pytest.raises(HostKeyError, match=rf"unknown host key for \[127.0.0.1\]:{a.port}"):
        ssh.connect(endpoint(target, known, proxy_jump="hop-a,hop-b"))
    notes: list[str] = []
    with ssh.connect(endpoint(target, known, proxy_jump="hop-a,hop-b"),
                     accept_new_host_key=True, progress=notes.append):
        pass
    recorded = [n for n in notes if n.startswith("recorded")]
    assert recorded == [f"recorded the host key of {name(a)} in {known}",
                        f"recorded the host key of {name(b)} in {known}"]


# --- keyboard-interactive: a one-time code through a terminal ----------------------------------

PAM_TOTP = """\
auth required pam_google_authenticator.so secret={secret} user=root
account required pam_permit.so
session required pam_permit.so
"""
PTY_CLIENT = """\
import sys
from pathlib import Path
from remote_runtime import ssh
from remote_runtime.cli.prompts import terminal_prompter
port, user, key, known = sys.argv[1:5]
endpoint = ssh.Endpoint(host="127.0.0.1", port=int(port), user=user,
                        identity_file=Path(key), known_hosts=Path(known))
with ssh.connect(endpoint, prompter=terminal_prompter()) as session:
    print("REMOTE SAYS", session.run("echo logged-in").stdout.strip(), flush=True)
"""


@pytest.fixture(scope="module")
def two_factor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """An sshd asking for a key and then a one-time code (AuthenticationMethods
    publickey,keyboard-interactive), the code checked by pam_google_authenticator."""
    require_root()
    module = Path("/lib/x86_64-linux-gnu/security/pam_google_authenticator.so")
    if not module.exists() and not list(Path("/").glob("usr/lib/*/security/"
                                                       "pam_google_authenticator.so")):
        unavailable("pam_google_authenticator is missing "
                    "(apt-get install libpam-google-authenticator)")
    base = tmp_path_factory.mktemp("2fa")
    secret = base / "ga_secret"
    secret.write_text(totp.secret_file())
    secret.chmod(0o400)
    server = start_sshd(base / "sshd", pam_stack=PAM_TOTP.format(secret=secret),
                        extra_config="AuthenticationMethods publickey,keyboard-interactive\n")
    try:
        yield server
    finally:
        server.close()


def run_in_terminal(argv: list[str], answer: str, expect: bytes, timeout: float = 60,
                    env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run `argv` on a new pseudo-terminal (its controlling terminal); each time `expect`
    appears, type `answer`. Returns the exit status and everything shown."""
    main, secondary = os.openpty()
    process = subprocess.Popen(["setsid", "--ctty", *argv], stdin=secondary, stdout=secondary,
                               stderr=secondary,
                               env=env or {**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                               close_fds=True)
    os.close(secondary)
    shown = b""
    answered = 0
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's last user is gone
                break
            if not chunk:
                break
            shown += chunk
            if shown.count(expect) > answered:
                os.write(main, answer.encode() + b"\n")
                answered += 1
        return process.wait(timeout=10), shown
    finally:
        timer.cancel()
        os.close(main)


def test_one_time_code_prompt_is_shown_as_the_server_sends_it(two_factor: Sshd,
                                                             tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(two_factor.known_hosts_line("127.0.0.1") + "\n")
    status, shown = run_in_terminal(
        ["python3", "-c", PTY_CLIENT, str(two_factor.port), two_factor.user,
         str(two_factor.client_key), str(known)],
        answer=totp.code(), expect=b"Verification code: ")
    text = shown.decode(errors="replace")
    assert status == 0, text
    assert text.count("Verification code: ") == 1 and "REMOTE SAYS logged-in" in text


def test_a_wrong_code_is_refused(two_factor: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(two_factor.known_hosts_line("127.0.0.1") + "\n")
    status, shown = run_in_terminal(
        ["python3", "-c", PTY_CLIENT, str(two_factor.port), two_factor.user,
         str(two_factor.client_key), str(known)],
        answer="000000" if totp.code() != "000000" else "111111",
        expect=b"Verification code: ")
    text = shown.decode(errors="replace")
    # Asked again as OpenSSH asks (NumberOfPasswordPrompts), then refused in one line.
    assert status != 0 and "REMOTE SAYS" not in text
    assert text.count("Verification code: ") == 3, text
    assert "refused the login (keyboard-interactive" in text
    assert "Traceback" not in text or "AuthenticationError" in text


def test_without_a_terminal_the_challenge_is_one_clear_line(two_factor: Sshd,
                                                            tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(two_factor.known_hosts_line("127.0.0.1") + "\n")
    with pytest.raises(AuthenticationError) as info:
        ssh.connect(endpoint(two_factor, known))
    assert "keyboard-interactive" in info.value.message
    assert "no terminal" in info.value.message
    assert info.value.hint and "terminal" in info.value.hint


PAM_PASSWORD = """\
auth required pam_exec.so expose_authtok quiet {check}
account required pam_permit.so
session required pam_permit.so
"""


def test_password_authentication_on_a_terminal(tmp_path: Path) -> None:
    """A server that takes only passwords (PasswordAuthentication through PAM): asked
    as OpenSSH asks, "user@host's password: ", hidden, then logged in."""
    require_root()
    check = tmp_path / "check-password"
    check.write_text('#!/bin/sh\nread -r given\n[ "$given" = "correct horse" ]\n')
    check.chmod(0o755)
    server = start_sshd(tmp_path / "sshd", pam_stack=PAM_PASSWORD.format(check=check),
                        extra_config="KbdInteractiveAuthentication no\n"
                        "PasswordAuthentication yes\nAuthenticationMethods password\n")
    try:
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line("127.0.0.1") + "\n")
        status, shown = run_in_terminal(
            ["python3", "-c", PTY_CLIENT, str(server.port), server.user,
             str(server.client_key), str(known)],
            answer="correct horse", expect=f"{server.user}@127.0.0.1's password: ".encode())
        text = shown.decode(errors="replace")
        assert status == 0 and "REMOTE SAYS logged-in" in text, text
        assert "correct horse" not in text  # typed with echo off
    finally:
        server.close()


def test_up_detach_asks_for_the_code_before_it_returns(tmp_path: Path) -> None:
    """The whole path: `up --detach` on a terminal, the one-time code asked by the
    supervisor's login and typed here, a healthy runtime, `down`. Without a terminal
    the same `up` fails with one line. The remote is this machine (Jupyter bound to
    127.0.0.2, the forwarder on 127.0.0.1, the same port), as in the sandbox's
    loopback mode; the managed Jupyter env is the sandbox's shared cache."""
    require_root()
    secret = tmp_path / "ga_secret"
    secret.write_text(totp.secret_file())
    secret.chmod(0o400)
    marker = str(tmp_path)
    SANDBOX_REMOTE_CACHE.mkdir(parents=True, exist_ok=True)
    server = start_sshd(tmp_path / "sshd", pam_stack=PAM_TOTP.format(secret=secret),
                        extra_config="AuthenticationMethods publickey,keyboard-interactive\n",
                        set_env={"XDG_CACHE_HOME": str(SANDBOX_REMOTE_CACHE),
                                 MARKER_ENV: marker})
    port = PORTS.take()
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line("127.0.0.1") + "\n")
    profiles = write_profiles(tmp_path / "profiles.yaml", {"otp": {
        "ssh": {"host": "127.0.0.1", "port": server.port, "user": server.user,
                "identity_file": str(server.client_key), "known_hosts": str(known)},
        "jupyter": {"port": port, "env": "managed", "python": "python3", "workdir": "~",
                    "bind_host": "127.0.0.2"}}})
    try:
        no_terminal = run_cli("up", "otp", "--detach", "--profiles", str(profiles),
                              timeout=120)
        assert_one_error_line(no_terminal, 4, "keyboard-interactive", "no terminal")
        status, shown = run_in_terminal(
            cli_argv("up", "otp", "--detach", "--profiles", str(profiles)),
            answer=totp.code(), expect=b"Verification code: ", timeout=300, env=cli_env())
        text = shown.decode(errors="replace")
        assert status == 0, text
        assert text.count("Verification code: ") == 1
        assert text.index("Verification code: ") < text.index("Runtime 'otp' is up"), text
        assert not port_closed(port)
        log = (Path(os.environ["XDG_STATE_HOME"]) / "remote-runtime" / "logs" / "otp.log")
        assert totp.code() not in log.read_text()  # the code is never logged
    finally:
        run_cli("down", "--all", "--profiles", str(profiles), timeout=120)
        kill_and_wait(lambda: pids_with_env(MARKER_ENV, marker))
        server.close()
    assert port_closed(port)


# --- agents, IdentitiesOnly, certificates, the profile's key first ---------------------------


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent on a socket of its own (not $SSH_AUTH_SOCK)."""
    socket_path = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if socket_path.exists():
                break
            threading.Event().wait(0.02)
        yield socket_path
    finally:
        process.terminate()
        process.wait(timeout=10)


def ssh_add(agent_socket: Path, *keys: Path) -> None:
    subprocess.run(["ssh-add", "-q", *map(str, keys)], check=True, capture_output=True,
                   env={**os.environ, "SSH_AUTH_SOCK": str(agent_socket)})


def new_key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def test_identity_agent_and_a_pub_identity_file(hops: list[Sshd], agent: Path,
                                                tmp_path: Path) -> None:
    target = hops[2]
    private = tmp_path / "agent_only"
    shutil.copy(target.client_key, private)
    private.chmod(0o600)
    ssh_add(agent, private)
    private.unlink()  # only the agent holds it now; the profile names its public half
    public = tmp_path / "id.pub"
    shutil.copy(str(target.client_key) + ".pub", public)
    known = tmp_path / "known_hosts"
    known.write_text(target.known_hosts_line("127.0.0.1") + "\n")
    write_ssh_config(f"Host 127.0.0.1\n  IdentityAgent {agent}\n  IdentitiesOnly yes\n")
    with ssh.connect(endpoint(target, known, identity_file=public)) as session:
        assert session.run("echo agent").stdout == "agent\n"
    write_ssh_config("Host 127.0.0.1\n  IdentityAgent none\n")
    with pytest.raises(AuthenticationError, match="not in the agent"):
        ssh.connect(endpoint(target, known, identity_file=public))


def test_the_profile_key_goes_first_past_max_auth_tries(agent: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    server = start_sshd(tmp_path / "sshd", extra_config="MaxAuthTries 2\n")
    try:
        strangers = [new_key(tmp_path / f"stranger{i}") for i in range(4)]
        ssh_add(agent, *strangers)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line("127.0.0.1") + "\n")
        with ssh.connect(endpoint(server, known)) as session:
            assert session.run("echo first").stdout == "first\n"
    finally:
        server.close()


def test_certificate_file(tmp_path: Path) -> None:
    require_root()
    ca = new_key(tmp_path / "ca")
    user_key = new_key(tmp_path / "user_key")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "test", "-n", "root",
                    str(user_key) + ".pub"], check=True, capture_output=True)
    cert = tmp_path / "elsewhere-cert.pub"
    shutil.move(str(user_key) + "-cert.pub", cert)  # found only through CertificateFile
    server = start_sshd(tmp_path / "sshd",
                        extra_config=f"TrustedUserCAKeys {ca}.pub\n")
    try:
        server.authorized_keys.write_text("")  # the certificate is the only way in
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line("127.0.0.1") + "\n")
        with pytest.raises(AuthenticationError):
            ssh.connect(endpoint(server, known, identity_file=user_key))
        write_ssh_config(f"Host 127.0.0.1\n  CertificateFile {cert}\n")
        with ssh.connect(endpoint(server, known, identity_file=user_key)) as session:
            assert session.run("echo cert").stdout == "cert\n"
    finally:
        server.close()


# --- known_hosts written where and as OpenSSH writes it ------------------------------------------


def test_accepted_keys_go_through_a_symlink_hashed_and_openssh_reads_them(
        hops: list[Sshd], tmp_path: Path) -> None:
    target = hops[2]
    real = tmp_path / "dotfiles" / "known_hosts"
    real.parent.mkdir()
    real.write_text("# kept in a dotfiles repository\n")
    link = tmp_path / "known_hosts"
    link.symlink_to(real)
    write_ssh_config("Host 127.0.0.1\n  HashKnownHosts yes\n")
    with ssh.connect(endpoint(target, link), accept_new_host_key=True):
        pass
    assert link.is_symlink()
    lines = real.read_text().splitlines()
    assert lines[0] == "# kept in a dotfiles repository" and len(lines) == 2
    assert lines[1].startswith("|1|") and host_matches(lines[1].split()[0], name(target))
    # OpenSSH itself trusts the line we wrote.
    done = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={link}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-i", str(target.client_key), "-p", str(target.port), "-l", target.user,
         "127.0.0.1", "echo", "openssh-agrees"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30, check=False)
    assert done.stdout == "openssh-agrees\n", done.stderr


def test_a_null_device_records_nothing_and_stays_a_device(hops: list[Sshd],
                                                          tmp_path: Path) -> None:
    target = hops[2]
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    write_ssh_config(f"Host 127.0.0.1\n  UserKnownHostsFile {device}\n"
                     "  StrictHostKeyChecking no\n")
    notes: list[str] = []
    with ssh.connect(endpoint(target, None), progress=notes.append) as session:
        assert session.run("echo vagrant-style").stdout == "vagrant-style\n"
    assert stat.S_ISCHR(device.stat().st_mode)
    assert any("StrictHostKeyChecking no" in n for n in notes)


def test_two_connections_recording_at_once_lose_nothing(hops: list[Sshd],
                                                        tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(hops))

    def connect(server: Sshd) -> None:
        try:
            barrier.wait(timeout=10)
            with ssh.connect(endpoint(server, known), accept_new_host_key=True):
                pass
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(s,)) for s in hops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    lines = known.read_text().splitlines()
    assert len(lines) == len(hops)
    for server in hops:  # plain or hashed (the machine's ssh_config decides)
        assert any(host_matches(line.split()[0], name(server))
                   and line.endswith(server.host_key_line) for line in lines)
