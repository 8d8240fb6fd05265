"""`remote-runtime up` end to end: the real CLI as a subprocess, a real OpenSSH sshd in a
network namespace (the "remote host"), the real managed Jupyter built there, our tunnel.

Nothing is stubbed: code runs in a kernel through the extension's websocket with the
Colab origin, and teardown is checked on the remote side through /proc (the namespace
shares the PID space with this host).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import UpProcess, error_lines, run_cli
from support.colab_client import ColabClient
from support.env import SANDBOX_REMOTE_CACHE, Isolated
from support.jupyter_venv import stack_venv
from support.net import PortRange, port_closed
from support.procs import alive, cmdline, descendants, in_other_netns, wait_gone
from support.remote import remote_server, sandbox_profile, write_profiles

from remote_runtime import cli
from remote_runtime.cli import render
from remote_runtime.errors import ExitCode
from remote_runtime.ssh.hostkeys import fingerprint, host_matches
from sandbox import Sandbox

StartUp = Callable[..., UpProcess]

FIRST_URL_TIMEOUT = 240.0  # the first run on a machine builds the managed venv
EXIT_TIMEOUT = 60.0
GONE_TIMEOUT = 30.0
PORTS = PortRange(18890, 18999)  # this file's ports
local_port = PORTS.take



def profiles_file(tmp_path: Path, box: Sandbox, port: int | None, **kwargs: Any) -> Path:
    return write_profiles(
        tmp_path / "profiles.yaml", {"sb": sandbox_profile(box, "sb", port, **kwargs)}
    )


def assert_torn_down(
    up: UpProcess, box: Sandbox, port: int, pids: list[int], isolated: Isolated
) -> None:
    """Nothing of the runtime is left: remote processes, local port, state record."""
    assert not wait_gone(pids), f"remote processes still running: {pids}; {up.describe()}"
    assert not wait_gone(box.remote_pids()), "the sandbox still runs remote processes"
    assert port_closed(port), f"localhost:{port} still accepts connections"
    assert port_closed(port, "::1")
    assert isolated.runtime_records == [], "a state record was left behind"


# --- the main job --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sighup"])
def test_up_runs_code_through_colab_route_then_tears_down(
    how: str, clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    up = start_up("sb", "--profiles", str(profiles_file(tmp_path, box, port)))
    url_port, token = up.wait_ready(FIRST_URL_TIMEOUT)
    assert url_port == port
    assert isolated.runtime_records, "no state record while up"

    server = remote_server(box, port)
    assert in_other_netns(server), "the Jupyter server does not run on the remote host"
    # DESIGN.md fact 4: the token reaches the server in its environment, never in argv.
    assert token not in cmdline(server)
    environ = Path(f"/proc/{server}/environ").read_bytes().split(b"\0")
    assert f"JUPYTER_TOKEN={token}".encode() in environ
    assert not [pid for pid in box.remote_pids() if token in cmdline(pid)]

    with ColabClient(port, token, timeout=30) as colab:
        kernel_id = colab.start_kernel()
        assert colab.execute(kernel_id, "print(6*7)", timeout=60).strip() == "42"
        kernels = descendants(server)
        assert kernels, "no kernel process below the server"
        assert any("ipykernel" in cmdline(pid) for pid in kernels)
        remote = box.remote_pids()
        assert server in remote and all(pid in remote for pid in kernels)

    if how == "ctrl-c":
        up.interrupt()  # the whole process group, as a terminal does
    else:
        up.signal(signal.SIGTERM if how == "sigterm" else signal.SIGHUP)
    status = up.wait(EXIT_TIMEOUT)
    assert status == ExitCode.OK, up.describe()

    assert_torn_down(up, box, port, [server, *kernels], isolated)
    stderr = up.stderr
    assert f"stopped the remote Jupyter server (pid {server}) and its kernels" in stderr
    assert f"closed the local forwarder on port {port}" in stderr
    assert "closed the SSH connection" in stderr
    assert "failed" not in stderr and "Traceback" not in stderr + up.stdout, up.describe()


@pytest.mark.integration
def test_interrupt_while_starting_leaves_nothing(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    up = start_up("sb", "--profiles", str(profiles_file(tmp_path, box, port)))
    up.wait_for(lambda line: "starting Jupyter" in line, FIRST_URL_TIMEOUT, "'starting Jupyter'")
    up.interrupt()
    status = up.wait(EXIT_TIMEOUT)
    assert status == ExitCode.INTERRUPTED, up.describe()
    assert "token=" not in up.stdout, "interrupted before the URL, yet a URL was printed"
    assert_torn_down(up, box, port, [], isolated)
    assert "Traceback" not in up.stderr


@pytest.mark.integration
def test_the_lease_is_renewed_while_up_and_list_shows_it(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    """With a 10 s lease, a server still answering after 14 s proves `up` renews it."""
    box = clean_remote
    port = local_port()
    profiles = profiles_file(tmp_path, box, port, jupyter={"lease_seconds": 10})
    up = start_up("sb", "--profiles", str(profiles))
    _, token = up.wait_ready(FIRST_URL_TIMEOUT)
    server = remote_server(box, port)

    listed = run_cli("list", "--json", "--profiles", str(profiles))
    assert listed.returncode == 0, listed
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["state"], row["port"], row["pid"]) == ("sb", "up", port, up.proc.pid)
    assert row["url"] == f"http://localhost:{port}/?token=<hidden>"
    assert token not in listed.stdout

    time.sleep(14)
    assert alive(server), f"the server stopped: its lease was not renewed; {up.describe()}"
    with ColabClient(port, token, timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print('still', 6*7)", timeout=60).strip() == "still 42"
    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert_torn_down(up, box, port, [server], isolated)


@pytest.fixture(scope="module")
def loopback_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A listening sshd on 127.0.0.1:<random port>; its Jupyter binds 127.0.0.2."""
    with Sandbox(
        tmp_path_factory.mktemp("loopback"),
        mode="loopback-alias",
        remote_cache_dir=SANDBOX_REMOTE_CACHE,
    ) as box:
        yield box


@pytest.mark.integration
def test_up_through_a_listening_sshd_on_a_non_22_port(
    loopback_box: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    """Host key recorded as [127.0.0.1]:PORT (as OpenSSH writes it), no ProxyCommand."""
    box = loopback_box
    port = local_port()
    body = sandbox_profile(box, "lo", port)
    assert "proxy_command" not in body["ssh"] and body["ssh"]["port"] != 22
    assert box.known_hosts_path.read_text().startswith(f"[127.0.0.1]:{body['ssh']['port']} ")
    profiles = write_profiles(tmp_path / "profiles.yaml", {"lo": body})
    up = start_up("lo", "--profiles", str(profiles))
    _, token = up.wait_ready(FIRST_URL_TIMEOUT)
    with ColabClient(port, token, timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print(6*7)", timeout=60).strip() == "42"
    remote = box.remote_pids()
    assert remote
    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert_torn_down(up, box, port, remote, isolated)


# --- host keys -----------------------------------------------------------------------------


def sandbox_host_key(box: Sandbox) -> tuple[str, str]:
    assert box.sshd is not None
    key_type, key_b64 = box.sshd.host_key_line.split()
    return key_type, key_b64


@pytest.mark.integration
def test_unknown_host_key_refused_then_accepted_and_recorded(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    box = clean_remote
    known = tmp_path / "empty_known_hosts"
    known.write_text("")
    inode, mode = known.stat().st_ino, known.stat().st_mode
    port = local_port()
    profiles = profiles_file(tmp_path, box, port, ssh={"known_hosts": str(known)})
    key_type, key_b64 = sandbox_host_key(box)

    result = run_cli("up", "sb", "--profiles", str(profiles))
    assert result.returncode == ExitCode.SSH, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert fingerprint(key_b64) in errors[0] and key_type in errors[0]
    assert "--accept-new-host-key" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert known.read_text() == ""
    assert isolated.state_files == []

    up = start_up("sb", "--profiles", str(profiles), "--accept-new-host-key")
    assert up.wait_ready(FIRST_URL_TIMEOUT)[0] == port
    assert_recorded_once(known, "sb", key_type, key_b64)
    # Appended to, as OpenSSH does, not replaced: the file keeps its inode and mode.
    assert (known.stat().st_ino, known.stat().st_mode) == (inode, mode)
    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert_torn_down(up, box, port, [], isolated)

    # Recorded: the next run connects without the flag (stopped right after the URL).
    again = start_up("sb", "--profiles", str(profiles))
    assert again.wait_ready(FIRST_URL_TIMEOUT)[0] == port
    again.interrupt()
    assert again.wait(EXIT_TIMEOUT) == ExitCode.OK, again.describe()
    assert_recorded_once(known, "sb", key_type, key_b64)


def assert_recorded_once(known: Path, name: str, key_type: str, key_b64: str) -> None:
    """One line for `name`: plain, or hashed when the machine's ssh_config says
    HashKnownHosts yes (Debian's does), as OpenSSH would write it."""
    lines = known.read_text().splitlines()
    assert len(lines) == 1, lines
    host, *key = lines[0].split()
    assert key == [key_type, key_b64] and host_matches(host, name)


def other_ed25519_key() -> str:
    blob = b"".join(
        len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", os.urandom(32))
    )
    return base64.b64encode(blob).decode()


@pytest.mark.integration
@pytest.mark.parametrize("accept_new", [False, True])
def test_changed_host_key_refused_naming_file_and_line(
    accept_new: bool, clean_remote: Sandbox, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    known = tmp_path / "known_hosts"
    original = f"# pinned\nsb ssh-ed25519 {other_ed25519_key()}\n"
    known.write_text(original)
    profiles = profiles_file(tmp_path, box, local_port(), ssh={"known_hosts": str(known)})
    args = ["up", "sb", "--profiles", str(profiles)]
    result = run_cli(*args, *(["--accept-new-host-key"] if accept_new else []))
    assert result.returncode == ExitCode.SSH, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert f"{known} line 2" in errors[0]
    assert "CHANGED" in errors[0]
    assert fingerprint(sandbox_host_key(box)[1]) in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert known.read_text() == original, "a changed key must never be recorded"
    assert isolated.state_files == []
    assert box.remote_pids() == []


# --- ports ---------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("where", ["profile", "--port"])
def test_explicit_port_taken_locally(
    where: str, clean_remote: Sandbox, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    with socket.create_server(("127.0.0.1", port)):
        if where == "profile":
            result = run_cli("up", "sb", "--profiles", str(profiles_file(tmp_path, box, port)))
        else:
            profiles = profiles_file(tmp_path, box, None)
            result = run_cli("up", "sb", "--profiles", str(profiles), "--port", str(port))
    assert result.returncode == ExitCode.PORT_IN_USE, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"port {port}" in errors[0], result.stderr
    assert "this machine" in errors[0]
    assert "Traceback" not in result.stderr
    assert not wait_gone(box.remote_pids())
    assert isolated.runtime_records == []


SERVE = (
    "import socket, sys, time\n"
    "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
    "print('bound', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.mark.integration
def test_explicit_port_taken_on_the_remote(
    clean_remote: Sandbox, tmp_path: Path, isolated: Isolated
) -> None:
    box = clean_remote
    assert box.namespace is not None
    port = local_port()
    holder = subprocess.Popen(
        box.namespace.argv([sys.executable, "-c", SERVE, str(port)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "bound"
        result = run_cli("up", "sb", "--profiles", str(profiles_file(tmp_path, box, port)))
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert result.returncode == ExitCode.PORT_IN_USE, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"port {port}" in errors[0], result.stderr
    assert "remote host" in errors[0]
    assert "Traceback" not in result.stderr
    assert port_closed(port)
    assert not wait_gone(box.remote_pids())
    assert isolated.runtime_records == []


@pytest.mark.integration
def test_default_port_taken_locally_picks_the_next_free_one(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    box = clean_remote
    default = 8888
    profiles = profiles_file(tmp_path, box, None)  # no jupyter.port: the default
    holder = None
    with contextlib.suppress(OSError):  # if something here holds it: taken either way
        holder = socket.create_server(("127.0.0.1", default))
    try:
        up = start_up("sb", "--profiles", str(profiles))
        port, token = up.wait_ready(FIRST_URL_TIMEOUT)
        assert default < port < default + 50
        assert f"port {default} is taken on this machine; using {port}" in up.stderr + up.stdout
        with ColabClient(port, token, timeout=30) as colab:
            assert colab.request("GET", "/api/status")[0] == 200
        server = remote_server(box, port)
        up.interrupt()
        assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    finally:
        if holder is not None:
            holder.close()
    assert_torn_down(up, box, port, [server], isolated)


FAKE_JUPYTER = """\
import http.server, os, sys
opts = dict(a[2:].split("=", 1) for a in sys.argv if a.startswith("--") and "=" in a)
print("fake jupyter: GET /?token=" + os.environ["JUPYTER_TOKEN"], flush=True)
token = "token " + os.environ["JUPYTER_TOKEN"]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # /api and token checks as Jupyter answers them; nothing else
        path = self.path.split("?")[0]
        ok = path == "/api" or (path == "/api/status" and
                                self.headers.get("Authorization") == token)
        self.send_response(200 if ok else 403 if path == "/api/status" else 404)
        self.end_headers()
        self.wfile.write(b'{"version": "6.5.7"}')
    def log_message(self, *args):
        pass
http.server.HTTPServer((opts["ip"], int(opts["port"])), Handler).serve_forever()
"""


@pytest.mark.integration
def test_failed_health_check_names_the_check_shows_the_log_and_tears_down(
    clean_remote: Sandbox, tmp_path: Path, isolated: Isolated
) -> None:
    """An "existing" Jupyter that answers HTTP but has no extension: exit 7."""
    box = clean_remote
    port = local_port()
    fake = tmp_path / "fake_jupyter.py"
    fake.write_text(FAKE_JUPYTER)
    # The stack venv passes the agent's import check; the server it runs is the fake.
    python = stack_venv() / "bin" / "python"
    command = f"{python} {fake}"
    profiles = profiles_file(tmp_path, box, port, jupyter={"env": "existing", "command": command})
    result = run_cli("up", "sb", "--profiles", str(profiles), "--timeout", "1", timeout=120)
    assert result.returncode == ExitCode.HEALTH, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    # Which check is named is not asserted: the poll's last attempt can be cut short by
    # the deadline and then names 'api' ("no answer within 0.0005 s"); see the report.
    assert errors[0].startswith("error: the runtime did not pass the '"), errors[0]
    assert "fake jupyter: GET /?token=<hidden>" in result.stderr  # the log tail, token hidden
    assert "token=" not in result.stderr.replace("token=<hidden>", "")
    assert "stopped the remote Jupyter server" in result.stderr
    assert "Traceback" not in result.stderr
    assert not wait_gone(box.remote_pids())
    assert port_closed(port)
    assert isolated.runtime_records == []


# --- the connection dies -------------------------------------------------------------------


@pytest.mark.integration
def test_ssh_connection_killed_mid_session_stops_the_remote_server(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    box = clean_remote
    port = local_port()
    up = start_up("sb", "--profiles", str(profiles_file(tmp_path, box, port)))
    up.wait_ready(FIRST_URL_TIMEOUT)
    server = remote_server(box, port)
    assert box.kill_sessions(), "no sshd session to kill"
    status = up.wait(EXIT_TIMEOUT)
    assert status == ExitCode.SSH, up.describe()
    errors = error_lines(up.stderr)
    assert len(errors) == 1 and "lost the SSH connection" in errors[0], up.describe()
    assert "Traceback" not in up.stderr
    # The agent stops the server when its channel closes; nobody is left to ask it to.
    assert_torn_down(up, box, port, [server], isolated)


@pytest.mark.integration
def test_remote_server_dying_while_up_is_reported(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    """The remote Jupyter is killed (OOM killer, a user's kill): `up` must say so and
    exit, not keep printing a URL that leads nowhere."""
    box = clean_remote
    port = local_port()
    up = start_up("sb", "--profiles", str(profiles_file(tmp_path, box, port)))
    _, token = up.wait_ready(FIRST_URL_TIMEOUT)
    server = remote_server(box, port)
    with ColabClient(port, token, timeout=30) as colab:
        colab.start_kernel()
    kernels = descendants(server)
    assert kernels
    os.kill(server, signal.SIGKILL)
    status = up.wait(EXIT_TIMEOUT)
    assert status == ExitCode.REMOTE_SETUP, up.describe()
    errors = error_lines(up.stderr)
    assert len(errors) == 1 and "the remote Jupyter server stopped unexpectedly" in errors[0]
    assert "Traceback" not in up.stderr
    # Its kernels (own sessions, orphaned by the kill) are stopped too.
    assert_torn_down(up, box, port, [server, *kernels], isolated)


@pytest.mark.integration
def test_unreachable_target(clean_remote: Sandbox, tmp_path: Path, isolated: Isolated) -> None:
    profiles = profiles_file(tmp_path, clean_remote, local_port(), ssh={"proxy_command": "false"})
    started = time.monotonic()
    result = run_cli("up", "sb", "--profiles", str(profiles))
    assert result.returncode == ExitCode.SSH, result
    assert time.monotonic() - started < 30
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        "error: SSH handshake with sb failed: ProxyCommand exited with status 1"
    ), errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert isolated.state_files == []


@pytest.mark.integration
def test_ctrl_c_while_the_url_prints_is_a_normal_stop(
    clean_remote: Sandbox,
    tmp_path: Path,
    isolated: Isolated,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A user may press Ctrl-C the moment the URL appears. In-process, so the signal
    lands deterministically in that window: right after the instructions print."""
    box = clean_remote
    port = local_port()
    render_up = render.up

    def render_then_ctrl_c(*args: Any, **kwargs: Any) -> None:
        render_up(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(render, "up", render_then_ctrl_c)
    status = cli.main(["up", "sb", "--profiles", str(profiles_file(tmp_path, box, port))])
    captured = capsys.readouterr()
    assert f"localhost:{port}/?token=" in captured.out
    assert "closed the SSH connection" in captured.err
    assert not wait_gone(box.remote_pids())
    assert port_closed(port)
    assert isolated.runtime_records == []
    assert status == ExitCode.OK, captured.err
    assert "stopping..." in captured.err


@pytest.mark.integration
def test_hostile_interpreter_value_is_not_run_by_the_remote_shell(
    clean_remote: Sandbox, tmp_path: Path, isolated: Isolated
) -> None:
    marker = tmp_path / "pwned"
    hostile = f"python3; touch {marker}; $(touch {marker}2)"
    profiles = profiles_file(tmp_path, clean_remote, local_port(), jupyter={"python": hostile})
    result = run_cli("up", "sb", "--profiles", str(profiles))
    assert result.returncode == ExitCode.REMOTE_SETUP, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"no Python interpreter '{hostile}'" in errors[0], result.stderr
    assert not marker.exists() and not Path(f"{marker}2").exists()
    assert isolated.runtime_records == []


@pytest.mark.integration
def test_an_interpreter_that_is_not_python_is_named(
    clean_remote: Sandbox, tmp_path: Path, isolated: Isolated
) -> None:
    profiles = profiles_file(tmp_path, clean_remote, local_port(), jupyter={"python": "perl"})
    result = run_cli("up", "sb", "--profiles", str(profiles))
    assert result.returncode == ExitCode.REMOTE_SETUP, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "'perl' on the remote host could not run the agent" in errors[0]
    assert "hint: jupyter.python must name a Python 3.6 or newer interpreter" in result.stderr
    assert "Traceback" not in result.stderr


# --- bad profiles through the CLI (no sandbox needed) --------------------------------------

GOOD_BODY = "    ssh:\n      host: example.com\n"

BAD_PROFILES = {
    # case: (file text or None for a missing file, expected fragments of the error line)
    "missing file": (None, ["profiles file not found"]),
    "malformed yaml": ("profiles:\n  box:\n    ssh: [unclosed\n", ["line 4", "malformed YAML"]),
    "unknown key": (
        "profiles:\n  box:\n    ssh:\n      host: h\n      hostname: x\n",
        ["line 5", "profile 'box'", "ssh.hostname", "did you mean 'host'"],
    ),
    "wrong type": (
        "profiles:\n  box:\n" + GOOD_BODY + "    jupyter:\n      port: eighty\n",
        ["line 6", "profile 'box'", "jupyter.port", "'eighty'"],
    ),
    "port out of range": (
        "profiles:\n  box:\n" + GOOD_BODY + "    jupyter:\n      port: 70000\n",
        ["line 6", "profile 'box'", "jupyter.port", "70000"],
    ),
    "neither ssh nor gce": (
        "profiles:\n  box:\n    jupyter:\n      port: 8888\n",
        ["line 2", "profile 'box'", "'ssh' or 'gce'"],
    ),
    "unknown profile name": ("profiles:\n  bx:\n" + GOOD_BODY, ["no profile named 'box'", "bx"]),
}


@pytest.mark.parametrize("case", list(BAD_PROFILES))
def test_bad_profiles_exit_3_with_one_line(case: str, tmp_path: Path, isolated: Isolated) -> None:
    text, fragments = BAD_PROFILES[case]
    path = tmp_path / "conf" / "profiles.yaml"
    if text is not None:
        path.parent.mkdir()
        path.write_text(text)
    result = run_cli("up", "box", "--profiles", str(path))
    assert result.returncode == ExitCode.PROFILE, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert str(path) in errors[0]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    lines = result.stderr.splitlines()
    assert len(lines) <= 2 and all(ln.startswith(("error:", "hint:")) for ln in lines), lines
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert isolated.state_files == []


def test_profiles_check_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "profiles:\n"
        "  one:\n"
        "    ssh:\n"
        "      hots: h\n"  # line 4: unknown (did you mean host) and host missing
        "  two:\n"
        "    ssh:\n"
        "      host: h\n"
        "    jupyter:\n"
        "      port: 0\n"  # line 9
        "      env: sometimes\n"  # line 10
        "  three:\n"
        "    description: nothing to connect to\n"
    )
    result = run_cli("profiles", "check", "--profiles", str(path))
    assert result.returncode == ExitCode.PROFILE, result
    errors = error_lines(result.stderr)
    assert len(errors) == 5, result.stderr
    joined = "\n".join(errors)
    assert (
        f"{path} line 4: profile 'one' key 'ssh.hots': unknown key (did you mean 'host'?)" in joined
    )
    assert "profile 'one' key 'ssh.host': is required" in joined
    assert f"{path} line 9: profile 'two' key 'jupyter.port'" in joined
    assert f"{path} line 10: profile 'two' key 'jupyter.env'" in joined
    assert f"{path} line 11: profile 'three'" in joined
    assert "Traceback" not in result.stderr


def test_profiles_check_good_file(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles:\n  a:\n" + GOOD_BODY + "  b:\n" + GOOD_BODY)
    result = run_cli("profiles", "check", "--profiles", str(path))
    assert result.returncode == ExitCode.OK, result
    assert "2 profile(s) OK" in result.stdout and "a, b" in result.stdout
    assert result.stderr == ""


# --- which Jupyter the remote runs (jupyter.env) --------------------------------------------


@pytest.mark.integration
def test_env_existing_runs_the_given_jupyter(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    """A host that already has a working stack (a Deep Learning VM's /opt/conda, here the
    test stack venv on the shared filesystem) is used as it is: no managed env."""
    box = clean_remote
    port = local_port()
    jupyter = stack_venv() / "bin" / "jupyter"
    profiles = profiles_file(tmp_path, box, port,
                             jupyter={"env": "existing", "command": str(jupyter)})
    up = start_up("sb", "--profiles", str(profiles))
    port_seen, token = up.wait_ready(FIRST_URL_TIMEOUT)
    assert port_seen == port
    assert f"using the existing Jupyter at {jupyter}" in up.stderr
    assert "managed" not in up.stderr
    server = remote_server(box, port)
    assert str(stack_venv()) in cmdline(server)
    with ColabClient(port, token, timeout=30) as colab:
        kernel = colab.start_kernel()
        assert colab.execute(kernel, "print(6*7)").strip() == "42"
    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert_torn_down(up, box, port, [server], isolated)


@pytest.mark.integration
def test_env_existing_without_a_colab_stack_is_exit_6(
    clean_remote: Sandbox, tmp_path: Path, isolated: Isolated
) -> None:
    """`existing` never installs: a Python without the classic notebook is refused,
    saying why, and the hint names the way out."""
    box = clean_remote
    port = local_port()
    profiles = profiles_file(tmp_path, box, port, jupyter={
        "env": "existing", "command": f"{sys.executable} -m jupyter"})
    result = run_cli("up", "sb", "--profiles", str(profiles), timeout=120)
    assert result.returncode == ExitCode.REMOTE_SETUP, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "no Jupyter on the remote host can serve Colab" in errors[0]
    # why neither stack can run there
    assert "no classic notebook with jupyter_http_over_ws; no Jupyter Server 2" in errors[0]
    assert "env: managed" in result.stderr  # the hint
    assert "Traceback" not in result.stderr
    assert port_closed(port)
    assert not wait_gone(box.remote_pids())
    assert isolated.runtime_records == []


@pytest.mark.integration
def test_default_port_taken_on_the_remote_picks_the_next_free_one(
    clean_remote: Sandbox, tmp_path: Path, start_up: StartUp, isolated: Isolated
) -> None:
    """As on a Deep Learning VM whose own JupyterLab holds a port: step around it."""
    box = clean_remote
    assert box.namespace is not None
    default = 8888
    holder = subprocess.Popen(
        box.namespace.argv([sys.executable, "-c", SERVE, str(default)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "bound"
        up = start_up("sb", "--profiles", str(profiles_file(tmp_path, box, None)))
        port, token = up.wait_ready(FIRST_URL_TIMEOUT)
        assert default < port < default + 50
        assert f"port {default} is taken on the remote host; using {port}" in up.stderr
        with ColabClient(port, token, timeout=30) as colab:
            assert colab.request("GET", "/api/status")[0] == 200
        server = remote_server(box, port)
        up.interrupt()
        assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert_torn_down(up, box, port, [server], isolated)
