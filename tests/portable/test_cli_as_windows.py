"""The CLI with what Windows lacks taken away (support/windows_like.py): it imports, runs
real commands, reads and cleans state, and `down` stops a live owner without SIGTERM.

No root and no network: the commands that need a runtime up run against the sandbox in
tests/integration/test_windows_like.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import windows_like
from support.cli import assert_one_error_line, describe
from support.env import REPO_ROOT, Isolated
from support.net import free_port

from remote_runtime import state
from remote_runtime.errors import ExitCode

PROFILES = """\
profiles:
  lab-box:
    ssh:
      host: 127.0.0.1
      port: {port}
      user: alice
  vm:
    gce:
      project: proj
      zone: us-central1-a
      instance: dl-vm
"""
DEAD_PID = 2**22 + 4321  # above any pid_max default: never a live process


@pytest.fixture
def profiles_file(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(PROFILES.format(port=free_port()))
    return path


def cli(profiles: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return windows_like.run_cli(*args, "--profiles", str(profiles))


def test_the_simulation_hides_what_windows_lacks(tmp_path: Path) -> None:
    """Guard: the tier is live (a blocker that let everything through would pass it all)."""
    result = windows_like.run_python(textwrap.dedent("""
        import os, signal
        for name in ("fcntl", "resource", "pwd", "termios", "tty", "grp"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit(f"{name} imported")
        assert not hasattr(signal, "SIGHUP") and not hasattr(os, "killpg")
        assert signal.SIGBREAK == int(signal.Signals.SIGUSR1)
        signal.signal(signal.SIGTERM, lambda *a: print("caught"))
        os.kill(os.getpid(), signal.SIGTERM)   # as TerminateProcess: no handler runs
        print("survived")
    """))
    assert result.returncode == -15, describe(result)
    assert "caught" not in result.stdout and "survived" not in result.stdout


def test_every_laptop_module_imports_and_its_os_branches_hold() -> None:
    modules = sorted(
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO_ROOT / "remote_runtime").rglob("*.py")
        if "agent" not in path.relative_to(REPO_ROOT).parts and path.name != "__main__.py"
    )
    assert "remote_runtime.state" in modules and len(modules) > 40
    result = windows_like.run_python(textwrap.dedent(f"""
        import importlib, os, signal, sys
        for name in {modules!r}:
            importlib.import_module(name)
        from remote_runtime import procs
        from remote_runtime.cli import exits, interrupts
        from remote_runtime.providers.gce import keys
        assert procs.stopping_signals() == (signal.SIGTERM, signal.SIGBREAK)
        assert interrupts.STOPPING_SIGNALS == (signal.SIGTERM, signal.SIGBREAK)
        exits._raise_fd_limit()                 # no `resource`: nothing to raise
        assert keys.default_user({{}}) == "user"  # no `pwd`, no USERNAME
        assert keys.default_user({{"USERNAME": "Ada"}}) == "Ada"
        print("ok")
    """))
    assert result.returncode == 0 and result.stdout.strip() == "ok", describe(result)


def test_version_and_profiles_check(profiles_file: Path, tmp_path: Path) -> None:
    result = windows_like.run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("remote-runtime "), describe(result)
    result = cli(profiles_file, "profiles", "check")
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == f"{profiles_file}: 2 profile(s) OK (lab-box, vm)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  box:\n    ssh:\n      host: h\n      prot: 22\n")
    result = cli(bad, "profiles", "check")
    assert result.returncode == ExitCode.PROFILE, describe(result)
    assert f"{bad} line 5" in result.stderr and "prot" in result.stderr, describe(result)


def test_messages_with_brackets_are_printed_as_written(profiles_file: Path) -> None:
    result = cli(profiles_file, "status", "[gce]")
    line = assert_one_error_line(result, ExitCode.PROFILE)
    assert "'[gce]'" in line, describe(result)


def test_the_missing_gce_library_hint_is_printed_whole(profiles_file: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        sys.modules["google.cloud.compute_v1"] = None   # a broken install
        from remote_runtime import cli
        sys.exit(cli.main(["up", "vm", "--profiles", {str(profiles_file)!r}]))
    """)
    result = windows_like.run_python(code)
    assert result.returncode == ExitCode.CLOUD, describe(result)
    assert "pip install --force-reinstall 'remote-runtime[gce]'" in result.stderr, describe(result)


def _dead_record(port: int) -> None:
    state.write(state.Record(
        name="lab-box", kind="ssh", pid=DEAD_PID, port=8888, token="s3cr3t-token",
        run_id="lab-box-1", target="alice@127.0.0.1", remote_log="/tmp/x.log",
        endpoint={"host": "127.0.0.1", "port": port, "user": "alice"}))


def test_list_status_logs_down_of_a_runtime_whose_owner_died(
    profiles_file: Path, isolated: Isolated
) -> None:
    port = int(profiles_file.read_text().split("port: ")[1].split()[0])  # nothing listens
    _dead_record(port)
    result = cli(profiles_file, "list", "--json")
    assert result.returncode == 0, describe(result)
    row = {r["name"]: r for r in json.loads(result.stdout)}["lab-box"]
    assert row["state"] == "stale" and str(DEAD_PID) in row["stale"]
    assert "s3cr3t-token" not in result.stdout + result.stderr
    for command in ("status", "logs"):
        assert_one_error_line(cli(profiles_file, command, "lab-box"), ExitCode.NOT_RUNNING,
                              f"owner process {DEAD_PID} is gone")
    result = cli(profiles_file, "down", "lab-box")
    assert result.returncode == 0, describe(result)
    assert "runtime 'lab-box' is down" in result.stdout
    assert "stale record" in result.stderr and "could not stop the remote server" in result.stderr
    assert "removed the state record" in result.stderr
    assert isolated.state_files == [], isolated.state_files
    assert_one_error_line(cli(profiles_file, "down", "lab-box"), ExitCode.NOT_RUNNING, "not up")


OWNER = """\
import os, sys, threading, time
from remote_runtime import state, stops
name = sys.argv[1]
state.claim(state.Record(name=name, kind="ssh", pid=os.getpid(), port=8888, token="t",
                         run_id="r", target="t", since=time.time() - 1))
asked = threading.Event()
with stops.Watcher(name, os.getpid(), asked.set):
    print("ready", flush=True)
    if not asked.wait(60):
        sys.exit("never asked")
print("tearing down", flush=True)
state.remove(name, pid=os.getpid())
"""


def test_down_stops_a_live_owner_with_a_stop_request(profiles_file: Path, isolated: Isolated,
                                                     tmp_path: Path) -> None:
    """SIGTERM cannot be caught here (as on Windows): the owner ends cleanly only if
    `down` asked through a stop request. The owner is a stand-in running the real
    Watcher; tests/integration/test_windows_like.py stops a real supervisor."""
    script = tmp_path / "remote_runtime_owner.py"  # `down` only stops remote_runtime's own
    script.write_text(OWNER)
    owner = subprocess.Popen([sys.executable, str(script), "lab-box"], env=windows_like.env(),
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        result = cli(profiles_file, "down", "lab-box")
        assert result.returncode == 0, describe(result)
        assert f"process {owner.pid} tore the runtime down" in result.stderr, describe(result)
        assert owner.wait(timeout=30) == 0
        assert owner.stdout.read().strip() == "tearing down"
        assert isolated.state_files == [], isolated.state_files
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
