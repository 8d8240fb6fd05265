"""Commands for the remote: quoting (no shell injection from profile values), the token
kept off every command line, and `ssh.Session` / the agent over a real SSH transport
(mockssh: an in-process paramiko server that runs commands through the local shell)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mockssh
import paramiko
import pytest
from support.net import free_port
from support.procs import alive

from remote_runtime import bootstrap, jupyter, remote, ssh
from remote_runtime.errors import (
    AuthenticationError,
    HostKeyError,
    PortInUseError,
    RemoteSetupError,
    SSHError,
)
from remote_runtime.profiles import JupyterSettings
from remote_runtime.ssh import Endpoint
from remote_runtime.ssh.hostkeys import host_matches
from sandbox import common

# mockssh 0.9 still calls Thread.setDaemon().
pytestmark = pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")

MOCKSSH_DIR = Path(mockssh.__file__).parent
USER_KEY = MOCKSSH_DIR / "sample-user-key"
SERVER_KEY_B64 = paramiko.RSAKey(filename=str(MOCKSSH_DIR / "server-key")).get_base64()


def sh(command: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "section", "command"), [
    ("classic", "NotebookApp", "notebook"), ("modern", "ServerApp", "server")])
def test_server_argv_has_no_token_and_the_colab_flags(
    stack: str, section: str, command: str
) -> None:
    argv = jupyter.server_argv(
        ["/env/bin/jupyter"],
        port=8888,
        bind_host="127.0.0.1",
        config_file="/c.py",
        notebook_dir="/nb",
        allow_root=True,
        stack=stack,
    )
    assert not [a for a in argv if "token" in a.lower()]
    assert argv[:2] == ["/env/bin/jupyter", command]
    for flag in (
        "--port=8888",
        "--ip=127.0.0.1",
        f"--{section}.port_retries=0",
        # allow_origin would win over the pattern: it is cleared, whatever a config says
        f"--{section}.allow_origin=",
        f"--{section}.allow_origin_pat={jupyter.ALLOW_ORIGIN_PAT}",
        f"--{section}.allow_credentials=True",
        "--no-browser",
        "--allow-root",
    ):
        assert flag in argv
    plain = jupyter.server_argv(
        ["j"], port=1, bind_host="::1", config_file="c", notebook_dir="n", allow_root=False,
        stack=stack,
    )
    assert "--allow-root" not in plain


class FakeProcess:
    """The agent's side of `start`: the output mark, then `answer` for every read."""

    def __init__(self, answer: str | None) -> None:
        self.written: list[str] = []
        self.answer = answer
        self.closed = False
        self.marked = False

    def write_line(self, line: str) -> None:
        self.written.append(line)

    def read_line(self, timeout: float) -> str | None:
        if not self.marked:
            self.marked = True
            return "a greeting from .bashrc" + bootstrap.OUTPUT_MARK
        return self.answer

    def read_stderr(self) -> str:
        return "agent stderr"

    def close(self) -> None:
        self.closed = True


class FakeSession:
    def __init__(self, answer: str | None) -> None:
        self.commands: list[str] = []
        self.process = FakeProcess(answer)

    def start(self, command: str) -> FakeProcess:
        self.commands.append(command)
        return self.process


TOKEN = "f00dfeedcafe" * 4
OK_ANSWER = json.dumps({"ok": True, "server_pid": 11, "monitor_pid": 10, "log": "/l"})


def start_with(answer: str | None, **settings: object) -> tuple[FakeSession, object]:
    session = FakeSession(answer)
    host = remote.RemoteHost(session, JupyterSettings(**settings))  # type: ignore[arg-type]
    handle = host.start_server(
        run_id="box-1",
        port=8888,
        token=TOKEN,
        jupyter_argv=["jupyter"],
        allow_root=False,
        on_disconnect="stop",
    )
    return session, handle


def test_start_sends_the_token_only_on_stdin() -> None:
    session, handle = start_with(OK_ANSWER, python="python3; $(evil)", workdir="~/nb $(x)")
    (command,) = session.commands
    assert command == bootstrap.LOGIN_COMMAND
    agent, line = session.process.written
    assert TOKEN not in agent
    mark = f"printf '%s\\n' {bootstrap.OUTPUT_MARK}"
    assert agent.startswith(f"{mark} && exec 'python3; $(evil)' -c ")
    config = json.loads(line)
    assert config["token"] == TOKEN
    assert TOKEN not in json.dumps(config["argv"])
    assert config["workdir"] == "~/nb $(x)"  # data in JSON, never in the shell
    assert config["on_disconnect"] == "stop"
    assert handle.server_pid == 11 and not session.process.closed  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (
            json.dumps({"error": "port_in_use", "port": 8888}),
            PortInUseError,
            "port 8888 is already in use on the remote host",
        ),
        (
            json.dumps({"error": "jupyter.workdir /x is not a directory"}),
            RemoteSetupError,
            "starting Jupyter failed: jupyter.workdir /x is not a directory",
        ),
        (None, RemoteSetupError, "the remote agent exited before starting Jupyter"),
        ("Traceback (most recent call last):", RemoteSetupError, "unexpected answer"),
    ],
)
def test_start_failures(answer: str | None, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")) as info:
        start_with(answer)
    assert TOKEN not in str(info.value) + str(getattr(info.value, "details", ""))


# --- a real SSH transport: mockssh ------------------------------------------------------------


@pytest.fixture
def mock_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[mockssh.Server]:
    monkeypatch.chdir(tmp_path)  # mockssh runs commands here, through the local shell
    with mockssh.Server({"alice": str(USER_KEY)}) as server:
        yield server


def endpoint(server: mockssh.Server, tmp_path: Path, *, known: bool = True) -> Endpoint:
    known_hosts = tmp_path / "known_hosts"
    if known and not known_hosts.exists():
        known_hosts.write_text(f"[127.0.0.1]:{server.port} ssh-rsa {SERVER_KEY_B64}\n")
    return Endpoint(
        host="127.0.0.1",
        port=server.port,
        user="alice",
        identity_file=USER_KEY,
        known_hosts=known_hosts,
    )


@pytest.fixture
def session(mock_server: mockssh.Server, tmp_path: Path) -> Iterator[ssh.Session]:
    with ssh.connect(endpoint(mock_server, tmp_path)) as connected:
        yield connected


def test_run_returns_status_stdout_and_stderr(session: ssh.Session) -> None:
    result = session.run("echo out; echo err >&2; exit 3")
    assert (result.status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert session.run("true").status == 0


def test_run_feeds_stdin(session: ssh.Session) -> None:
    result = session.run("head -n 1 | tr a-z A-Z", stdin="hello\nignored\n")
    assert result.stdout == "HELLO\n"


def test_run_collects_large_output(session: ssh.Session) -> None:
    code = "import sys; sys.stdout.write(('x' * 99 + '\\n') * 5000)"
    result = session.run(f"{ssh.quote(sys.executable)} -c {ssh.quote(code)}")
    assert result.status == 0 and len(result.stdout) == 500_000


def test_run_times_out(session: ssh.Session) -> None:
    started = time.monotonic()
    with pytest.raises(SSHError, match="timed out after 1s"):
        session.run("sleep 5", timeout=1)
    assert time.monotonic() - started < 4
    assert session.alive and session.run("echo still here").stdout == "still here\n"


def test_run_after_the_connection_is_gone(session: ssh.Session) -> None:
    session.transport.close()
    assert not session.alive
    with pytest.raises(SSHError, match=r"lost the SSH connection to 127\.0\.0\.1"):
        session.run("true")


def test_start_streams_lines_both_ways(session: ssh.Session) -> None:
    process = session.start('while read line; do echo "got $line"; done')
    process.write_line("one")
    assert process.read_line(timeout=10) == "got one"
    process.write_line("two")
    assert process.read_line(timeout=10) == "got two"
    with pytest.raises(SSHError, match="no answer from the remote process within 1s"):
        process.read_line(timeout=1)
    process.close()


def test_unknown_then_accepted_host_key_of_a_non_22_port(
    mock_server: mockssh.Server, tmp_path: Path
) -> None:
    target = endpoint(mock_server, tmp_path, known=False)
    with pytest.raises(
        HostKeyError, match=rf"unknown host key for \[127.0.0.1\]:{mock_server.port}"
    ):
        ssh.connect(target)
    with ssh.connect(target, accept_new_host_key=True) as first:
        assert first.run("echo hi").stdout == "hi\n"
    # One line; hashed when the machine's ssh_config says HashKnownHosts yes (Debian's does).
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f" ssh-rsa {SERVER_KEY_B64}")
    assert host_matches(lines[0].split()[0], f"[127.0.0.1]:{mock_server.port}")
    with ssh.connect(target) as again:  # recorded as [host]:port, and found there
        assert again.run("echo again").stdout == "again\n"


def test_refused_key(mock_server: mockssh.Server, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    paramiko.RSAKey.generate(1024).write_private_key_file(str(other))
    target = endpoint(mock_server, tmp_path)
    with pytest.raises(AuthenticationError, match=r"alice@127.0.0.1 refused every key"):
        ssh.connect(Endpoint(**{**target.__dict__, "identity_file": other}))


def test_probe_through_ssh(session: ssh.Session) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        host = remote.RemoteHost(session, JupyterSettings(python=sys.executable, env="managed"))
        probe = host.probe([busy, busy + 1 if busy < 65535 else busy - 1])
    assert busy not in probe.free_ports
    assert probe.uid == os.getuid() and probe.is_root == (os.getuid() == 0)
    assert probe.version == sys.version_info[:2]
    assert probe.candidates == []  # env: managed does not look for an existing stack
    assert probe.other_pythons == []  # only looked for when this Python is too old


FAKE_SERVER = """\
import json, os, sys, time
with open({record!r}, "w") as handle:
    json.dump({{"argv": sys.argv, "token": os.environ.get("JUPYTER_TOKEN"),
               "cwd": os.getcwd()}}, handle)
time.sleep(600)
"""


def wait_until(check: Callable[[], object], timeout: float) -> bool:
    return common.wait_until(lambda: bool(check()), timeout=timeout, interval=0.1)


def cmdlines_holding(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def fake_jupyter(tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    record = tmp_path / "server.json"
    script = tmp_path / "fake_jupyter.py"
    script.write_text(FAKE_SERVER.format(record=str(record)))
    yield [sys.executable, str(script)], record
    # Whatever happens in the test, the fake server does not outlive it.
    for pid in cmdlines_holding(str(script)):
        os.kill(pid, signal.SIGKILL)


def test_start_and_stop_through_the_agent(
    session: ssh.Session, fake_jupyter: tuple[list[str], Path]
) -> None:
    argv, record = fake_jupyter
    host = remote.RemoteHost(session, JupyterSettings(python=sys.executable))
    port = free_port()
    handle = host.start_server(
        run_id="box-0123abcd",
        port=port,
        token=TOKEN,
        jupyter_argv=argv,
        allow_root=False,
        on_disconnect="stop",
    )
    try:
        assert wait_until(record.exists, 15), "the server did not start"
        started = json.loads(record.read_text())
        assert started["token"] == TOKEN  # in the environment...
        assert TOKEN not in json.dumps(started["argv"])  # ...not in its argv
        assert f"--port={port}" in started["argv"] and "notebook" in started["argv"]
        assert cmdlines_holding(TOKEN) == []  # on no command line of any process
        assert started["cwd"] == os.path.expanduser("~")
        assert alive(handle.server_pid) and alive(handle.monitor_pid)
        assert host.status(handle.run_id)["running"] is True
        log = Path(handle.log_path)
        assert log.exists() and (log.stat().st_mode & 0o077) == 0
    finally:
        reason = host.stop(handle)
    assert reason == "stopped by remote-runtime"
    assert wait_until(lambda: not alive(handle.server_pid), 15)
    assert wait_until(lambda: not alive(handle.monitor_pid), 15)
    assert host.status(handle.run_id)["running"] is False
    # Stopping again is harmless.
    assert host.stop(handle) == "already stopped"


def test_the_port_check_happens_on_the_remote(
    session: ssh.Session, fake_jupyter: tuple[list[str], Path]
) -> None:
    argv, record = fake_jupyter
    host = remote.RemoteHost(session, JupyterSettings(python=sys.executable))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} .* remote host"):
            host.start_server(
                run_id="box-port",
                port=port,
                token=TOKEN,
                jupyter_argv=argv,
                allow_root=False,
                on_disconnect="stop",
            )
    assert not record.exists()


def test_a_server_whose_lease_is_not_renewed_stops_itself(
    session: ssh.Session, fake_jupyter: tuple[list[str], Path]
) -> None:
    """The owner vanished without closing the channel (a hung network): the lease runs out."""
    argv, record = fake_jupyter
    host = remote.RemoteHost(session, JupyterSettings(python=sys.executable, lease_seconds=2))
    handle = host.start_server(
        run_id="box-lease",
        port=free_port(),
        token=TOKEN,
        jupyter_argv=argv,
        allow_root=False,
        on_disconnect="lease",
    )
    assert wait_until(record.exists, 15)
    assert wait_until(lambda: not alive(handle.server_pid), 20), "the lease did not expire"
    # The monitor records why once it has stopped everything.
    assert wait_until(lambda: "stopped" in host.status(handle.run_id)["state"], 20)
    status = host.status(handle.run_id)
    assert status["running"] is False
    assert status["state"]["reason"].startswith("lease expired")
    assert handle.process is not None
    handle.process.close()


def test_mockssh_is_what_the_tests_think(tmp_path: Path) -> None:
    """Guard: the in-process server really runs commands through a shell here."""
    assert shutil.which("sh")
    with mockssh.Server({"alice": str(USER_KEY)}) as server:
        client = server.client("alice")
        try:
            _, stdout, _ = client.exec_command("echo $((6*7))")
            assert stdout.read() == b"42\n"
        finally:
            client.close()
