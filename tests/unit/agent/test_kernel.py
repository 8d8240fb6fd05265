"""The agent's kernel half: the user's login environment read from every kind of login
shell, the launcher (a clean environment, the login one, kernel.setup, the notebook dir),
and which Python `kernel.python` means - run with real shells and interpreters here."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Any

import pytest
from support.shells import shell_path

from remote_runtime.agent import kernel

TRICKY = "it's \"q\" $HOME `x` \\ ; & | * ~\nsecond line"
SHOW = ("exec " + sys.executable + " -c 'import json,os,sys; print(json.dumps({\"env\": "
        "dict(os.environ), \"cwd\": os.getcwd(), \"argv\": sys.argv[1:]}))' "
        '"$_rr_connection_file"')


def launch(tmp_path: Path, login_env: dict[str, str], setup: list[str],
           workdir: Path | None = None, final: str = SHOW) -> subprocess.CompletedProcess[str]:
    """Run a launcher as Jupyter runs a kernelspec's argv, from a server's environment."""
    env_file = tmp_path / "login.env"
    env_file.write_text(kernel.env_file_text(login_env))
    launcher = tmp_path / "launch.sh"
    launcher.write_text(kernel.launcher_text(str(env_file), str(workdir or tmp_path), setup,
                                             final))
    server_env = {"PATH": os.environ["PATH"], "JUPYTER_TOKEN": "s3cret", "SERVER_ONLY": "1",
                  "JPY_PARENT_PID": "4242", "VIRTUAL_ENV": "/server/venv"}
    return subprocess.run(["/bin/sh", str(launcher), "/run/kernel-1.json"], env=server_env,
                          capture_output=True, text=True, timeout=60, check=False)


def shown(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


# --- the launcher ----------------------------------------------------------------------------


def test_the_kernel_starts_from_the_login_environment_only(tmp_path: Path) -> None:
    login = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RR_TRICKY": TRICKY,
             "SSH_CONNECTION": "1.2.3.4 5 6.7.8.9 22", "JUPYTER_TOKEN": "from-login",
             "BASH_FUNC_module%%": "() { :; }", "PWD": "/elsewhere"}
    seen = shown(launch(tmp_path, login, []))
    env = seen["env"]
    assert env["RR_TRICKY"] == TRICKY  # any value survives the env file
    assert env["HOME"] == str(tmp_path) and env["PATH"] == "/usr/bin:/bin"
    assert env["JPY_PARENT_PID"] == "4242"  # the kernel still watches its server
    for gone in ("JUPYTER_TOKEN", "SERVER_ONLY", "VIRTUAL_ENV", "SSH_CONNECTION",
                 "BASH_FUNC_module%%", "JPY_SESSION_NAME", "RR_KERNEL_LAUNCH"):
        assert gone not in env, gone
    assert seen["argv"] == ["/run/kernel-1.json"]
    assert seen["cwd"] == str(tmp_path)


def test_setup_lines_run_in_the_notebook_dir_and_source_takes_arguments(tmp_path: Path) -> None:
    workdir = tmp_path / "my notebooks"
    workdir.mkdir()
    (workdir / "activate").write_text('export RR_ACTIVATED="$1"\nexport RR_WHERE="$PWD"\n')
    setup = ["source ./activate ml", "export HF_HOME=/data/hf",
             "if [ -n \"$RR_ACTIVATED\" ]; then\n  export RR_MULTI=yes\nfi"]
    env = shown(launch(tmp_path, {"PATH": "/usr/bin:/bin"}, setup, workdir))["env"]
    assert env["RR_ACTIVATED"] == "ml"  # sh's `.` has no arguments; the shim passes them
    assert env["RR_WHERE"] == str(workdir)
    assert env["HF_HOME"] == "/data/hf" and env["RR_MULTI"] == "yes"


@pytest.mark.parametrize(("line", "status"), [("false", 1), ("source /no/such/activate ml", 2)])
def test_a_failing_setup_line_stops_the_kernel_and_says_which(
        tmp_path: Path, line: str, status: int) -> None:
    result = launch(tmp_path, {"PATH": "/usr/bin:/bin"}, ["export A=1", line, "echo never"])
    assert result.returncode == 1 and "never" not in result.stdout
    assert (f"remote-runtime: kernel.setup line 2 failed (exit status {status}): {line}"
            in result.stderr)


def test_a_missing_notebook_dir_stops_the_kernel(tmp_path: Path) -> None:
    result = launch(tmp_path, {"PATH": "/usr/bin:/bin"}, [], tmp_path / "gone")
    assert result.returncode == 1 and not result.stdout


# --- the login environment, from every kind of login shell -----------------------------------

LOGIN_FILES = {
    "bash": {".profile": 'export RR_LOGIN=yes\n. "$HOME/.bashrc"\n',
             ".bashrc": "echo hi\ncase $- in *i*) ;; *) return;; esac\n"
                        "export RR_INTERACTIVE=yes\n"},
    "dash": {".profile": "echo hi\nexport RR_LOGIN=yes\n"},
    "zsh": {".zprofile": "echo hi\nexport RR_LOGIN=yes\n",
            ".zshrc": "[[ -o interactive ]] && export RR_INTERACTIVE=yes\n"},
    "tcsh": {".login": "setenv RR_LOGIN yes\n", ".cshrc": "echo hi\nsetenv RR_INTERACTIVE yes\n"},
    "fish": {".config/fish/config.fish": "echo hi\nif status is-login\n set -gx RR_LOGIN yes\nend\n"
             "if status is-interactive\n set -gx RR_INTERACTIVE yes\nend\n"},
}


def login_home(tmp_path: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch,
               shell: str) -> None:
    home = tmp_path / "home"
    for relative, text in files.items():
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHELL", shell)
    monkeypatch.delenv("XDG_CONFIG_HOME")  # fish reads ~/.config/fish, as on a real host


@pytest.mark.parametrize("name", sorted(LOGIN_FILES))
def test_the_login_environment_is_what_a_terminal_login_gets(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    login_home(tmp_path, LOGIN_FILES[name], monkeypatch, shell_path(name))
    env, note = kernel.login_environment()
    assert note is None
    assert env["RR_LOGIN"] == "yes"
    if name != "dash":
        assert env["RR_INTERACTIVE"] == "yes"


def test_a_background_job_of_a_startup_file_does_not_hold_things_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    login_home(tmp_path, {".profile": 'sleep 60 &\necho $! > "$HOME/job"\nexport RR_LOGIN=yes\n'},
               monkeypatch, "/bin/dash")
    started = time.monotonic()
    try:
        env, note = kernel.login_environment()
        assert time.monotonic() - started < 15  # not the 30 s timeout: done at the mark
        assert note is None and env["RR_LOGIN"] == "yes"
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((tmp_path / "home" / "job").read_text()), signal.SIGKILL)


def test_a_login_shell_that_fails_or_hangs_leaves_the_session_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    login_home(tmp_path, {".profile": "sleep 30\n"}, monkeypatch, "/bin/dash")
    env, note = kernel.login_environment(timeout=1)
    assert env == dict(os.environ)
    assert note == "the login shell /bin/dash did not report its environment (timed out after 1s)"
    monkeypatch.setenv("SHELL", "/bin/false")
    env, note = kernel.login_environment()
    assert note is not None and "did not report its environment (exit status 1)" in note


# --- which Python -------------------------------------------------------------------------


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_kernel_python_names_a_path_or_a_command(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": str(tmp_path / "bin")}
    mine = executable(tmp_path / "envs" / "ml" / "bin" / "python")
    assert kernel.resolve("~/envs/ml/bin/python", env, []) == (str(mine), "kernel.python")
    named = executable(tmp_path / "bin" / "python3.10")
    assert kernel.resolve("python3.10", env, []) == (str(named), "kernel.python")
    with pytest.raises(kernel.KernelError, match="not an executable file on the remote host"):
        kernel.resolve("~/nope/bin/python", env, [])


def test_auto_prefers_an_active_env_then_the_dlvm_base_then_python3(tmp_path: Path) -> None:
    conda = executable(tmp_path / "conda" / "envs" / "ml" / "bin" / "python")
    base = executable(tmp_path / "opt" / "conda" / "bin" / "python")
    python3 = executable(tmp_path / "bin" / "python3")
    search = [str(tmp_path / "missing" / "python"), str(base)]
    env = {"PATH": str(tmp_path / "bin"), "CONDA_PREFIX": str(conda.parent.parent)}
    assert kernel.resolve("auto", env, search) == (str(conda), "auto: the active conda environment")
    del env["CONDA_PREFIX"]
    assert kernel.resolve("auto", {**env, "VIRTUAL_ENV": str(conda.parent.parent)}, search)[1] == (
        "auto: the active virtualenv")
    assert kernel.resolve("auto", env, search) == (
        str(base), "auto: the Deep Learning VM's conda base")
    # A conda base that others could have written to is passed over.
    (tmp_path / "opt" / "conda").chmod(0o777)
    assert kernel.resolve("auto", env, search) == (
        str(python3), "auto: python3 of the login environment")
    with pytest.raises(kernel.KernelError, match="no python3 in the remote login environment"):
        kernel.resolve("auto", {"PATH": str(tmp_path / "empty")}, [])


# --- the `kernel` command, in process ----------------------------------------------------------


def bare_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(path)
    return path / "bin" / "python"


def test_prepare_reports_the_python_and_whether_it_has_ipykernel(tmp_path: Path) -> None:
    answer = kernel.prepare({"python": sys.executable, "workdir": str(tmp_path)})
    assert answer["ok"] and answer["ipykernel"] is True
    assert answer["version"] == ".".join(map(str, sys.version_info[:3]))
    assert answer["why"] == "kernel.python" and answer["prefix"] == sys.prefix
    bare = bare_venv(tmp_path / "bare")
    answer = kernel.prepare({"python": str(bare), "workdir": str(tmp_path),
                             "setup": ["export PYTHONNOUSERSITE=1"]})
    assert answer["ipykernel"] is False and answer["executable"] == str(bare)


def test_prepare_fails_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(kernel.KernelError, match=r"jupyter.workdir .* is not a directory"):
        kernel.prepare({"python": sys.executable, "workdir": str(tmp_path / "gone")})
    with pytest.raises(kernel.KernelError) as info:
        kernel.prepare({"python": sys.executable, "workdir": str(tmp_path),
                        "setup": ["source ~/miniconda3/bin/activate ml"]})
    assert info.value.message == (
        "kernel.setup line 1 failed (exit status 2): source ~/miniconda3/bin/activate ml")
    assert "cannot open" in (info.value.details or "")
    with pytest.raises(kernel.KernelError, match="/bin/true did not answer as a Python"):
        kernel.prepare({"python": "/bin/true", "workdir": str(tmp_path)})
    bare = bare_venv(tmp_path / "bare")  # no pip either: the install fails, and says why
    with pytest.raises(kernel.KernelError, match=f"installing ipykernel into {bare} failed"
                       ) as info:
        kernel.prepare({"python": str(bare), "workdir": str(tmp_path), "install": True})
    assert "No module named pip" in (info.value.details or "")
    assert "installing ipykernel" in capsys.readouterr().out  # progress was reported
