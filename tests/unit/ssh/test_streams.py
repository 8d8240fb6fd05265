"""ProxyCommand run as OpenSSH runs it on each OS (remote_runtime/ssh/streams.py), measured
against the real `ssh` where this machine can (POSIX)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from remote_runtime import procs
from remote_runtime.errors import SSHError
from remote_runtime.ssh import streams

LOGGING_SHELL = """#!/bin/sh
# Records how it was called, then behaves as /bin/sh.
printf '%s\\n' "$@" > "{log}"
exec /bin/sh "$@"
"""


@pytest.fixture
def logging_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shell = tmp_path / "myshell"
    shell.write_text(LOGGING_SHELL.format(log=tmp_path / "argv.log"))
    shell.chmod(0o755)
    monkeypatch.setenv("SHELL", str(shell))
    return tmp_path / "argv.log"


def test_posix_runs_it_through_the_users_shell_as_openssh_does(logging_shell: Path) -> None:
    command = "sh -c 'printf x >&2; exit 3'"  # "exec" replaces the shell: one program
    if shutil.which("ssh"):  # the reference: OpenSSH's own ProxyCommand
        subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ProxyCommand={command}",
                        "-o", "BatchMode=yes", "nohost"], capture_output=True, timeout=30,
                       check=False)
        openssh = logging_shell.read_text().splitlines()
        logging_shell.unlink()
    else:
        openssh = ["-c", f"exec {command}"]
    proxy = streams.ProxyCommandSocket(command, windows=False)
    try:
        assert proxy.process.wait(timeout=10) == 3
        assert "x" in proxy.failure_detail()
    finally:
        proxy.close()
    ours = logging_shell.read_text().splitlines()
    assert ours == openssh == ["-c", f"exec {command}"]


def test_posix_falls_back_to_bin_sh() -> None:
    assert streams.proxy_argv("nc %h 22", windows=False, environ={}) == [
        "/bin/sh", "-c", "exec nc %h 22"]
    assert streams.proxy_argv("nc h 22", windows=False, environ={"SHELL": ""})[0] == "/bin/sh"


def test_windows_hands_the_command_line_to_createprocess_as_written() -> None:
    # Win32-OpenSSH (sshconnect.c, FORK_NOT_SUPPORTED): posix_spawnp of the command
    # string without the "exec " prefix; no shell.
    line = r'"C:\Program Files\Google\gcloud.cmd" compute start-iap-tunnel vm 22'
    assert streams.proxy_argv(line, windows=True) == line


def test_command_lines_per_os(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["gcloud", "compute", "start-iap-tunnel", "vm", "22", "--zone", "us-central1-a"]
    assert streams.command_line(argv, windows=False) == (
        "gcloud compute start-iap-tunnel vm 22 --zone us-central1-a")
    sdk = tmp_path / "Cloud SDK" / "bin"
    sdk.mkdir(parents=True)
    (sdk / "gcloud").write_text("#!/bin/sh\n")
    (sdk / "gcloud").chmod(0o755)
    monkeypatch.setenv("PATH", str(sdk))
    # On Windows, which() finds gcloud.cmd through PATHEXT; CreateProcess alone would not.
    assert streams.command_line(argv, windows=True) == (
        f'"{sdk / "gcloud"}" compute start-iap-tunnel vm 22 --zone us-central1-a')
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert streams.command_line(["gcloud.cmd", "a b"], windows=True) == 'gcloud.cmd "a b"'


def test_the_pipe_bridge_carries_bytes_both_ways_and_closes() -> None:
    """Windows hands a child pipes, not a socket: two pumps bridge them (run here on POSIX)."""
    proxy = streams.ProxyCommandSocket("cat", windows=False, pipes=True)
    try:
        proxy.sock.settimeout(10)
        payload = bytes(range(256)) * 1024  # larger than a pipe buffer and a pump chunk
        proxy.sock.sendall(payload[:1000])
        got = b""
        while len(got) < 1000:
            got += proxy.sock.recv(65536)
        assert got == payload[:1000]
        proxy.sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += proxy.sock.recv(65536)
        assert got == payload
    finally:
        proxy.close()
    assert proxy.process.poll() is not None and not procs.alive(proxy.process.pid)
    assert not any(pump.is_alive() for pump in proxy._pumps)


def test_the_pipe_bridge_reports_eof_when_the_command_ends() -> None:
    proxy = streams.ProxyCommandSocket("printf 'SSH-2.0-x\\r\\n'", windows=False, pipes=True)
    try:
        proxy.sock.settimeout(10)
        data = b""
        while chunk := proxy.sock.recv(1024):
            data += chunk
        assert data == b"SSH-2.0-x\r\n"
    finally:
        proxy.close()


def test_a_missing_program_is_an_ssh_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "proxy_argv", lambda command, **kw: ["/nonexistent/program"])
    for pipes in (False, True):
        with pytest.raises(SSHError, match="cannot run ProxyCommand"):
            streams.ProxyCommandSocket("x", windows=False, pipes=pipes)
