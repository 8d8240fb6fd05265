"""How the agent runs on the remote: one command every login shell parses alike, the agent
line on stdin (quoted: no shell injection from profile values, `~` expanded there), and
the greeting of chatty startup files dropped - through real sh, bash, zsh, tcsh and fish
(support.shells)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.net import free_port
from support.procs import alive
from support.shells import SHELLS, LocalShellSession, chatty_home, shell_path

from remote_runtime import bootstrap, remote
from remote_runtime.errors import RemoteSetupError
from remote_runtime.profiles import JupyterSettings

HOSTILE = [
    "$(touch pwned-subst)",
    "`touch pwned-backtick`",
    "; touch pwned-semicolon",
    "&& touch pwned-and",
    "| touch pwned-pipe",
    "> pwned-redirect",
    'it\'s "quoted" \\ back\\slash',
    "$HOME ${PATH} ~ * ?",
    "",
    "--",
    "-c",
]


def pwned(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("pwned"))


def through_sh(line: str, cwd: Path, stdin: str = "",
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """What the remote does with an agent line: the login command, the line on stdin."""
    return subprocess.run(["/bin/sh", "-c", bootstrap.LOGIN_COMMAND], input=line + "\n" + stdin,
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
                          env=env)


def recording_python(directory: Path, record: Path) -> Path:
    fake = directory / "python3"
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"json.dump({{'argv': sys.argv[1:], 'stdin': sys.stdin.read(),"
                    f" 'lines': os.environ.get('RR_LINES')}}, open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    return fake


# --- quoting -------------------------------------------------------------------------------


def test_hostile_python_value_is_one_word(tmp_path: Path) -> None:
    for python in ("python3; touch pwned", "python3 && touch pwned2", "$(touch pwned3)"):
        result = through_sh(bootstrap.agent_line(python, "probe"), tmp_path)
        assert result.returncode == 127, result  # "not found": one word, not code
    assert pwned(tmp_path) == []


def test_agent_receives_every_value_verbatim_and_the_rest_of_stdin(tmp_path: Path) -> None:
    odd_dir = tmp_path / "py $(touch pwned-dir) `x` 'q\" \t;&"
    odd_dir.mkdir()
    record = tmp_path / "argv.json"
    fake = recording_python(odd_dir, record)
    line = bootstrap.agent_line(str(fake), "status", *HOSTILE,
                                env={"RR_LINES": "7; touch pwned-env"})
    assert "\n" not in line  # `read` takes one line
    result = through_sh(line, tmp_path, stdin='{"config": 1}\nping\n')
    assert result.returncode == 0, result
    assert result.stdout == bootstrap.OUTPUT_MARK + "\n"
    assert pwned(tmp_path) == []
    seen = json.loads(record.read_text())
    argv = seen["argv"]
    assert argv[0] == "-c" and "sys.argv.pop(1)" in argv[1]
    sources = json.loads(zlib.decompress(base64.b64decode(argv[2])).decode())
    assert sources == bootstrap.agent_sources()
    assert sources["rr_agent.main"] == (Path(bootstrap.__file__).parent / "agent" / "main.py"
                                        ).read_text()
    assert argv[3:] == ["status", *HOSTILE]
    assert seen["stdin"] == '{"config": 1}\nping\n'  # sh left the agent's stdin alone
    assert seen["lines"] == "7; touch pwned-env"


@pytest.mark.parametrize("where", ["python", "argument", "variable"])
def test_a_line_break_is_refused_not_sent(where: str) -> None:
    value = "line one\nline two; touch pwned"
    with pytest.raises(ValueError, match="single lines"):
        bootstrap.agent_line(value if where == "python" else "python3",
                             *([value] if where == "argument" else []),
                             env={"RR_LINES": value} if where == "variable" else None)


def test_a_tilde_in_python_is_the_remote_home(tmp_path: Path) -> None:
    home = tmp_path / "remote home"
    (home / "bin").mkdir(parents=True)
    record = tmp_path / "argv.json"
    recording_python(home / "bin", record)
    env = {**os.environ, "HOME": str(home)}
    result = through_sh(bootstrap.agent_line("~/bin/python3", "status", "x"), tmp_path, env=env)
    assert result.returncode == 0, result
    assert json.loads(record.read_text())["argv"][3:] == ["status", "x"]
    assert bootstrap.remote_path("~") == '"$HOME"'
    assert bootstrap.remote_path("/opt/x y") == "'/opt/x y'"
    assert bootstrap.remote_path("~other/x") == "'~other/x'"  # only the user's own home


def test_the_real_agent_runs_and_refuses_a_bad_run_id(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        with socket.create_server(("127.0.0.1", 0)) as probe_free:
            free = probe_free.getsockname()[1]
        config = {"bind_host": "127.0.0.1", "check_existing": False, "requirements": ["x"]}
        result = through_sh(bootstrap.agent_line(sys.executable, "probe", str(free), str(busy)),
                            tmp_path, stdin=json.dumps(config) + "\n")
    assert result.returncode == 0, result
    answer = json.loads(bootstrap.after_mark(result.stdout))
    assert answer["free_ports"] == [free] and answer["uid"] == os.getuid()
    result = through_sh(bootstrap.agent_line(sys.executable, "status", "../x; touch pwned"),
                        tmp_path)
    assert result.returncode != 0 and "bad run id" in result.stderr
    assert pwned(tmp_path) == []


def test_after_mark_and_refusal() -> None:
    mark = bootstrap.OUTPUT_MARK
    assert bootstrap.after_mark(f"Welcome\npartial{mark}\n{{\"ok\": 1}}\n") == '{"ok": 1}\n'
    assert bootstrap.after_mark("sh: 1: exec: python3: not found\n") == (
        "sh: 1: exec: python3: not found\n")
    refused = bootstrap.refusal('x\n{"refused": "/c is writable", "hint": "chmod go-w /c"}\n')
    assert isinstance(refused, RemoteSetupError)
    assert (refused.message, refused.hint) == ("/c is writable", "chmod go-w /c")
    assert bootstrap.refusal('{"ok": true}\n') is None


# --- every login shell, chatty startup files --------------------------------------------------

FAKE_SERVER = """\
import json, os, sys, time
print("fake server up", flush=True)
with open({record!r}, "w") as handle:
    json.dump({{"token": os.environ.get("JUPYTER_TOKEN"), "env": dict(os.environ)}}, handle)
time.sleep(600)
"""


@pytest.fixture
def fake_jupyter(tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    record = tmp_path / "server.json"
    script = tmp_path / "fake_jupyter.py"
    script.write_text(FAKE_SERVER.format(record=str(record)))
    yield [sys.executable, str(script)], record
    for entry in Path("/proc").iterdir():  # the fake server never outlives the test
        if entry.name.isdigit():
            try:
                if str(script).encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), 9)
            except OSError:
                continue


def wait_for(check: Any, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("shell", SHELLS)
def test_every_agent_command_through_a_chatty_login_shell(
    shell: str, tmp_path: Path, fake_jupyter: tuple[list[str], Path]
) -> None:
    argv, record = fake_jupyter
    session = LocalShellSession(shell_path(shell), chatty_home(tmp_path))
    host = remote.RemoteHost(session, JupyterSettings(python=sys.executable))  # type: ignore[arg-type]
    try:
        with socket.create_server(("127.0.0.1", 0)) as taken:
            busy = taken.getsockname()[1]
            probe = host.probe([busy])
        assert probe.free_ports == [] and probe.uid == os.getuid()
        handle = host.start_server(run_id=f"run-{shell}", port=free_port(), token="t0ken",
                                   jupyter_argv=argv, allow_root=False, on_disconnect="lease")
        assert wait_for(record.exists), "the server did not start"
        assert json.loads(record.read_text())["token"] == "t0ken"
        assert handle.process is not None
        handle.process.close()  # the connection drops; the server runs on under its lease
        host.attach(handle)
        assert host.status(handle.run_id)["running"] is True
        assert wait_for(lambda: "fake server up" in host.log_tail(handle.run_id))
        tail = host.log_tail(handle.run_id)
        assert "hello" not in tail and "Welcome" not in tail
        assert host.stop(handle) == "stopped by remote-runtime"
        assert wait_for(lambda: not alive(handle.server_pid))
    finally:
        session.close()
