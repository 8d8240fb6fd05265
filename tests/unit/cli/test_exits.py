"""The CLI's contract: stable exit codes, one line per error (never a traceback on the
screen), and the shape of `list --json`."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement  # pytest's own dependency
from support.cli import cli_env, run_cli
from support.env import REPO_ROOT, Isolated

from remote_runtime import cli, errors, profiles, state
from remote_runtime.cli import exits as cli_exits
from remote_runtime.errors import ExitCode

Capture = pytest.CaptureFixture[str]

DOCUMENTED = {
    "OK": 0,
    "ERROR": 1,
    "USAGE": 2,
    "PROFILE": 3,
    "SSH": 4,
    "PORT_IN_USE": 5,
    "REMOTE_SETUP": 6,
    "HEALTH": 7,
    "CLOUD": 8,
    "NOT_RUNNING": 9,
    "STATE": 10,
    "NOTEBOOK": 11,
    "PREEMPTED": 12,
    "UNREACHABLE": 13,
    "BROWSER": 14,
    "COMMAND_NOT_FOUND": 127,
    "INTERRUPTED": 130,
}

PROFILES = """\
profiles:
  lab-box:
    ssh:
      host: lab.example.com
      port: 2222
      user: alice
    jupyter:
      port: 9000
  plain:
    ssh:
      host: plain.example.com
  vm:
    gce:
      project: proj
      zone: us-central1-a
      instance: dl-vm
"""


def run(argv: list[str], capsys: Capture) -> tuple[int, str, str]:
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def assert_one_error(err: str) -> str:
    lines = err.splitlines()
    errors_ = error_lines(err)
    assert len(errors_) == 1, err
    assert all(line.startswith(("error:", "hint:")) for line in lines), err
    assert "Traceback" not in err
    return errors_[0]


@pytest.fixture
def profiles_file(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(PROFILES)
    return path


# --- exit codes --------------------------------------------------------------------------------


def test_exit_codes_are_stable() -> None:
    assert {code.name: int(code) for code in ExitCode} == DOCUMENTED


def test_readme_documents_every_exit_code() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.RemoteRuntimeError, ExitCode.ERROR),
        (errors.UsageError, ExitCode.USAGE),
        (errors.ProfileError, ExitCode.PROFILE),
        (errors.SSHError, ExitCode.SSH),
        (errors.HostKeyError, ExitCode.SSH),
        (errors.AuthenticationError, ExitCode.SSH),
        (errors.PortInUseError, ExitCode.PORT_IN_USE),
        (errors.RemoteSetupError, ExitCode.REMOTE_SETUP),
        (errors.HealthCheckError, ExitCode.HEALTH),
        (errors.CloudError, ExitCode.CLOUD),
        (errors.NotRunningError, ExitCode.NOT_RUNNING),
        (errors.StateError, ExitCode.STATE),
        (errors.NotebookError, ExitCode.NOTEBOOK),
        (errors.PreemptedError, ExitCode.PREEMPTED),
    ],
)
def test_each_error_maps_to_its_code(
    error: type[errors.RemoteRuntimeError], code: ExitCode, capsys: Capture
) -> None:
    assert error.exit_code == code
    status = cli_exits.report(error("it broke", hint="fix it", details="line 1\nline 2"))
    err = capsys.readouterr().err
    assert status == code
    assert err.splitlines() == ["error: it broke", "line 1", "line 2", "hint: fix it"]


# --- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "box", "--bogus"],
        ["up"],
        ["up", "box", "--port", "0"],
        ["up", "box", "--port", "eighty"],
        ["up", "box", "--timeout", "0"],
        ["no-such-command"],
        ["list", "--json", "extra"],
        ["profiles", "check", "--nope"],
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: Capture) -> None:
    status, out, err = run(argv, capsys)
    assert status == ExitCode.USAGE, err
    assert_one_error(err)
    assert out == ""


def test_unknown_option_through_the_real_entry_point(isolated: Isolated) -> None:
    result = run_cli("up", "box", "--no-such-option")
    assert result.returncode == ExitCode.USAGE
    line = assert_one_error(result.stderr)
    assert "--no-such-option" in line
    assert result.stdout == ""


def test_version(capsys: Capture) -> None:
    status, out, _ = run(["--version"], capsys)
    assert status == 0 and re.fullmatch(r"remote-runtime \d+\.\d+\.\d+\n", out)


# --- errors are lines, not tracebacks ----------------------------------------------------------


def test_unexpected_error_goes_to_the_log_not_the_screen(
    profiles_file: Path, isolated: Isolated, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("the bug")

    monkeypatch.setattr(profiles, "load", broken)
    status, out, err = run(["list", "--profiles", str(profiles_file)], capsys)
    assert status == ExitCode.ERROR
    line = assert_one_error(err)
    log = isolated.state / "remote-runtime" / "logs" / "errors.log"
    assert line == f"error: unexpected ZeroDivisionError: the bug; details in {log}"
    logged = log.read_text()
    assert "Traceback" in logged and "ZeroDivisionError: the bug" in logged
    assert out == ""


def test_missing_profiles_file_everywhere_it_is_looked_for(
    isolated: Isolated, capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    default = isolated.config / "remote-runtime" / "profiles.yaml"
    for argv in (["list"], ["up", "box"], ["status", "box"], ["down", "box"], ["logs", "box"]):
        status, _, err = run(argv, capsys)
        assert status == ExitCode.PROFILE, (argv, err)
        assert assert_one_error(err) == f"error: {default}: profiles file not found", argv
    monkeypatch.setenv(profiles.ENV_VAR, str(tmp_path / "env.yaml"))
    status, _, err = run(["list"], capsys)
    assert status == ExitCode.PROFILE
    assert f"{tmp_path / 'env.yaml'}: profiles file not found" in assert_one_error(err)
    assert isolated.state_files == []


def test_profile_errors_show_every_problem_below_the_first(tmp_path: Path, capsys: Capture) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("profiles:\n  a:\n    ssh: {hots: h}\n")
    status, _, err = run(["up", "a", "--profiles", str(path)], capsys)
    assert status == ExitCode.PROFILE
    lines = err.splitlines()
    assert lines[0] == (
        f"error: {path} line 3: profile 'a' key 'ssh.hots': unknown key (did you mean "
        "'host'?) (and 1 more problem(s))"
    )
    assert lines[1] == f"{path} line 3: profile 'a' key 'ssh.host': is required"
    assert lines[2].startswith("hint: run 'remote-runtime profiles check'")
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["status", "down", "logs"])
def test_commands_on_a_runtime_that_is_not_up(
    command: str, profiles_file: Path, capsys: Capture, isolated: Isolated
) -> None:
    status, _, err = run([command, "plain", "--profiles", str(profiles_file)], capsys)
    assert status == ExitCode.NOT_RUNNING, err
    assert "runtime 'plain' is not up" in assert_one_error(err)


def test_unknown_profile_name(profiles_file: Path, capsys: Capture) -> None:
    status, _, err = run(["up", "lab-bx", "--profiles", str(profiles_file)], capsys)
    assert status == ExitCode.PROFILE
    line = assert_one_error(err)
    assert line == (
        f"error: {profiles_file}: no profile named 'lab-bx' (profiles: lab-box, plain, vm)"
    )
    assert "hint: did you mean 'lab-box'?" in err


# --- list --json -------------------------------------------------------------------------------


def test_list_json_shape(profiles_file: Path, capsys: Capture) -> None:
    status, out, err = run(["list", "--json", "--profiles", str(profiles_file)], capsys)
    assert status == 0, err
    rows = json.loads(out)
    assert rows == [
        {
            "name": "lab-box",
            "kind": "ssh",
            "target": "alice@lab.example.com:2222",
            "state": "down",
            "jupyter_port": 9000,
        },
        {
            "name": "plain",
            "kind": "ssh",
            "target": "plain.example.com",
            "state": "down",
            "jupyter_port": 8888,
        },
        {
            "name": "vm",
            "kind": "gce",
            "target": "proj/us-central1-a/dl-vm",
            "state": "down",
            "jupyter_port": 8888,
        },
    ]
    assert err == ""


def test_list_json_reports_a_stale_record_without_its_token(
    profiles_file: Path, capsys: Capture
) -> None:
    dead_pid = 2**22 + 12345  # above any pid_max default: never a live process
    state.write(
        state.Record(
            name="plain",
            kind="ssh",
            pid=dead_pid,
            port=8888,
            token="s3cr3t-token",
            run_id="plain-1",
            target="plain.example.com",
        )
    )
    status, out, err = run(["list", "--json", "--profiles", str(profiles_file)], capsys)
    assert status == 0, err
    row = {r["name"]: r for r in json.loads(out)}["plain"]
    assert row["state"] == "stale" and str(dead_pid) in row["stale"]
    assert "s3cr3t-token" not in out


def test_list_text_names_the_file_and_every_profile(profiles_file: Path, capsys: Capture) -> None:
    status, out, _ = run(["list", "--profiles", str(profiles_file)], capsys)
    assert status == 0
    assert str(profiles_file) in out
    for text in ("lab-box", "alice@lab.example.com:2222", "9000", "plain", "vm", "gce"):
        assert text in out


def test_profiles_check_uses_the_lookup_order(
    isolated: Isolated, capsys: Capture, profiles_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(profiles.ENV_VAR, str(profiles_file))
    status, out, err = run(["profiles", "check"], capsys)
    assert status == 0, err
    assert out.strip() == f"{profiles_file}: 3 profile(s) OK (lab-box, plain, vm)"


# --- packaging -----------------------------------------------------------------------------


def _dependency_closure(dist: str) -> set[str]:
    """Distributions `dist` installs unconditionally (no extras), normalised names. The
    checkout's own pyproject.toml says what it needs (the installed metadata may be an
    older checkout's); installed metadata says what those need in turn."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        if key == dist:
            project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
            requires = list(project["dependencies"])
        else:
            try:
                requires = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_the_cli_runs_with_only_its_declared_dependencies(tmp_path: Path) -> None:
    """Everything installed here that `pip install remote-runtime` would not bring is made
    unimportable; the CLI must still start (optional imports may degrade)."""
    allowed = _dependency_closure("remote-runtime")
    blocked = sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if module.isidentifier()
        and module not in sys.stdlib_module_names
        and not {re.sub(r"[-_.]+", "-", d).lower() for d in dists} & allowed
    )
    assert "pytest" in blocked  # the check is live: test-only packages are blocked
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "from remote_runtime import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    for argv, expected in ((["--version"], 0), (["up", "x", "--bogus"], ExitCode.USAGE)):
        result = subprocess.run(
            [sys.executable, "-c", code, *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        assert result.returncode == expected, result.stderr[-2000:]


# --- open-file limit -------------------------------------------------------------------------


def test_the_open_file_limit_is_raised_where_there_is_one() -> None:
    code = ("import resource\nfrom remote_runtime.cli import exits\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
            "exits._raise_fd_limit()\n"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], min(hard, 10240))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=cli_env(), timeout=60, check=False)
    raised, floor = map(int, result.stdout.split())
    assert raised >= floor, result.stderr


def test_no_resource_module_no_limit_to_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows
    cli_exits._raise_fd_limit()
