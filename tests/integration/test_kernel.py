"""The kernel Colab starts is the user's own Python (issue 8 parts 1 and 4), end to end.

Real parts only: the CLI as a subprocess, a real OpenSSH sshd in the sandbox's network
namespace, the real managed Jupyter there, our tunnel, and both of Colab's routes (the
extension's websocket and the direct CORS one) driven by tests/support/colab_client.

Each test says which remote it plays:
- a *fresh* remote: its own HOME and login shell (support.remote_user: a private
  /etc/passwd for sshd in a mount namespace), none of root's dotfiles, no pyenv;
- the *realistic* remote: root's own HOME with its pyenv startup files and this
  machine's pip configuration (extra indexes, find-links, constraints).

Ports 20000-20499 are this file's.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.cli import (
    assert_one_error_line,
    cli_argv,
    cli_env,
    describe,
    run_cli,
)
from support.colab_client import ColabClient, DirectClient
from support.env import Isolated
from support.net import PortRange, port_closed
from support.procs import wait_gone
from support.remote import Teardown, remote_server, sandbox_profile, write_profiles
from support.remote_user import MARKER_MODULE, RemoteUser, python_env, remote_user

from remote_runtime.errors import ExitCode
from remote_runtime.kernel import AUTO_ENV
from sandbox import Sandbox

UP_TIMEOUT = 300.0  # the first run on a machine builds the managed venv
INSTALL_TIMEOUT = 600.0  # ... and pip-installs ipykernel through the sandbox's proxy
EXIT_TIMEOUT = 60.0
PORTS = PortRange(20000, 20499)
local_port = PORTS.take

# Run in the kernel: what it is and what it sees, as one JSON line.
REPORT = f"""\
import json, os, sys
try:
    import {MARKER_MODULE} as marker
    value = marker.VALUE
except ImportError:
    value = None
print(json.dumps({{"executable": sys.executable, "marker": value, "cwd": os.getcwd(),
                  "env": dict(os.environ), "ipykernel": __import__("ipykernel").__file__}}))
"""

# Startup files of a fresh remote whose login shell is bash: the .bashrc greets on every
# command (sshd's non-interactive bash reads it too) and sets a variable only for
# interactive shells; .profile sets one for login shells. A terminal login sees both.
BASH_FILES = {
    ".bashrc": 'echo "Welcome to the lab box"\n'
               "case $- in *i*) ;; *) return;; esac\n"
               "export RR_INTERACTIVE=from-bashrc\n",
    ".profile": "export RR_LOGIN=from-profile\n. \"$HOME/.bashrc\"\n",
    "activate-ml": 'export RR_ACTIVATED="$1"\n',  # sourced with an argument, as conda's
}
TCSH_FILES = {
    ".tcshrc": 'echo "hello from .tcshrc"\nsetenv RR_INTERACTIVE from-tcshrc\n',
    ".login": "setenv RR_LOGIN from-login\n",
}


def report(client: ColabClient | DirectClient, token: str) -> dict[str, Any]:
    kernel = client.start_kernel()
    try:
        out = client.execute(kernel, REPORT, timeout=90)
    finally:
        client.shutdown_kernel(kernel)
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    env = data["env"]
    # The token and the server's own environment never reach the kernel.
    assert "JUPYTER_TOKEN" not in env
    assert not [k for k, v in env.items() if token in v], "the token is in the kernel's env"
    assert "JUPYTER_RUNTIME_DIR" not in env and "JUPYTER_PATH" not in env
    return data


def cli(profiles: Path, *args: str, timeout: float = EXIT_TIMEOUT
        ) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--profiles", str(profiles), timeout=timeout)


def assert_nothing_left(box: Sandbox, port: int, isolated: Isolated) -> None:
    assert not wait_gone(box.remote_pids()), "the sandbox still runs remote processes"
    assert port_closed(port), f"localhost:{port} still accepts connections"
    assert isolated.runtime_records == [], "a state record was left behind"


# --- the Deep Learning VM layout -----------------------------------------------------------


@pytest.mark.integration
def test_auto_picks_the_dlvm_conda_base_and_both_routes_run_in_it(
    clean_remote: Sandbox, teardown: Teardown, tmp_path: Path, isolated: Isolated,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fresh remote (bash, a .bashrc that prints): a conda-like prefix where a DLVM has
    /opt/conda (through the configurable search list, never the real /opt) holds
    ipykernel and a marker package; kernel.python: auto picks it."""
    box = clean_remote
    user = remote_user(tmp_path, "/bin/bash", {
        **BASH_FILES,
        "notebooks/.keep": "",
        # A kernelspec the user already has: it stays listed.
        ".local/share/jupyter/kernels/other-env/kernel.json": json.dumps(
            {"argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f",
                      "{connection_file}"], "display_name": "Other", "language": "python"}),
    })
    prefix = tmp_path / "opt" / "conda"
    python = python_env(prefix, ipykernel=True, marker="dlvm-conda-base")
    monkeypatch.setenv(AUTO_ENV, f"{tmp_path}/no-such/bin/python:{python}")
    port = local_port()
    profiles = teardown.add(write_profiles(tmp_path / "profiles.yaml", {"dl": user.profile(
        box, "dl", port,
        jupyter={"workdir": "~/notebooks"},
        kernel={"python": "auto",
                "setup": ["source ~/activate-ml ml", "export RR_SETUP=from-setup"]})}))

    result = cli(profiles, "up", "dl", "--detach", "--json", timeout=UP_TIMEOUT)
    assert result.returncode == 0, describe(result)
    info = json.loads(result.stdout)
    assert info["kernel"] == str(python)
    assert f"kernel: {python} (Python " in result.stderr
    assert "auto: the Deep Learning VM's conda base" in result.stderr
    assert "Welcome" not in result.stdout + result.stderr
    token = info["token"]

    for client in (ColabClient(port, token, timeout=30), DirectClient(port, token, timeout=30)):
        with client:
            seen = report(client, token)
        assert seen["executable"] == str(python), type(client).__name__
        assert seen["marker"] == "dlvm-conda-base"
        assert seen["cwd"] == str(user.home / "notebooks")
        env = seen["env"]
        assert env["RR_SETUP"] == "from-setup" and env["RR_ACTIVATED"] == "ml"
        assert env["RR_LOGIN"] == "from-profile" and env["RR_INTERACTIVE"] == "from-bashrc"
        assert env["HOME"] == str(user.home)

    with DirectClient(port, token) as direct:
        status, _, body = direct.request("GET", "/api/kernelspecs")
    specs = json.loads(body)
    assert status == 200 and specs["default"] == "python3"
    assert {"python3", "other-env"} <= set(specs["kernelspecs"])

    # The server's runtime files (they hold the token) are in the run's private dir.
    server = remote_server(box, port)
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{server}/environ").read_text().split("\0") if "=" in item)
    runtime = Path(environ["JUPYTER_RUNTIME_DIR"])
    assert (runtime.stat().st_mode & 0o077) == 0 and (runtime.parent.stat().st_mode & 0o077) == 0
    assert (runtime / f"nbserver-{server}.json").exists()
    login_env = runtime.parent / "kernel.env"  # the login environment kernels start from
    assert (login_env.stat().st_mode & 0o077) == 0
    assert not list((user.home / ".local/share/jupyter").glob("runtime/nbserver-*"))

    logs = cli(profiles, "logs", "dl", "-n", "5")
    assert logs.returncode == 0 and logs.stdout.strip(), describe(logs)
    assert "Welcome" not in logs.stdout and token not in logs.stdout

    down = cli(profiles, "down", "dl", timeout=120)
    assert down.returncode == 0, describe(down)
    assert_nothing_left(box, port, isolated)
    assert not login_env.exists(), "the login environment outlived the server"


# --- login shells ----------------------------------------------------------------------------


@pytest.mark.integration
def test_a_tcsh_login_shell_that_prints(
    clean_remote: Sandbox, tmp_path: Path, start_up: Any, isolated: Isolated,
) -> None:
    """Fresh remote whose login shell is tcsh with chatty startup files; `~` in
    jupyter.python and kernel.python is the remote home."""
    box = clean_remote
    user = remote_user(tmp_path, shutil.which("tcsh") or "/usr/bin/tcsh", TCSH_FILES)
    (user.home / "bin").mkdir()
    (user.home / "bin" / "python3").symlink_to("/usr/bin/python3")
    python = python_env(user.home / "envs" / "ml", ipykernel=True, marker="tcsh-env")
    port = local_port()
    profiles = write_profiles(tmp_path / "profiles.yaml", {"t": user.profile(
        box, "t", port, jupyter={"python": "~/bin/python3"},
        kernel={"python": "~/envs/ml/bin/python"})})

    up = start_up("t", "--profiles", str(profiles))
    _, token = up.wait_ready(UP_TIMEOUT)
    assert f"kernel: {python} (Python " in up.stderr
    with ColabClient(port, token, timeout=30) as colab:
        seen = report(colab, token)
    assert seen["executable"] == str(python) and seen["marker"] == "tcsh-env"
    assert seen["env"]["RR_INTERACTIVE"] == "from-tcshrc"
    assert seen["env"]["RR_LOGIN"] == "from-login"
    assert seen["env"]["SHELL"] == user.shell

    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert "stopped the remote Jupyter server" in up.stderr, up.describe()
    assert "hello from" not in up.stdout + up.stderr
    assert_nothing_left(box, port, isolated)


# --- ipykernel missing ----------------------------------------------------------------------


def up_on_a_pty(profiles: Path, name: str, answer: str, *extra: str) -> tuple[int, str]:
    """`up` with a terminal on stdin that answers the first question with `answer`."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(cli_argv("up", name, "--profiles", str(profiles), *extra),
                            env=cli_env(),
                            stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    os.close(terminal)
    try:
        assert proc.stderr is not None
        seen = ""
        deadline = time.monotonic() + UP_TIMEOUT
        while "[y/N]" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            if select.select([proc.stderr], [], [], 1.0)[0]:
                seen += os.read(proc.stderr.fileno(), 4096).decode()
        os.write(controller, f"{answer}\n".encode())
        _, rest = proc.communicate(timeout=UP_TIMEOUT)
        return proc.returncode, seen + rest
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
@pytest.mark.parametrize("how", ["no", "ask-without-terminal", "ask-declined-on-terminal",
                                 "ask-declined-on-terminal-detached"])
def test_a_python_without_ipykernel_is_an_error_naming_the_command(
    how: str, clean_remote: Sandbox, tmp_path: Path, isolated: Isolated,
) -> None:
    """Realistic remote; kernel.python is a venv without ipykernel (nor pip)."""
    box = clean_remote
    python = python_env(tmp_path / "bare", ipykernel=False)
    port = local_port()
    policy = "no" if how == "no" else "ask"
    profiles = write_profiles(tmp_path / "profiles.yaml", {"k": sandbox_profile(
        box, "k", port, kernel={"python": str(python), "install_ipykernel": policy})})
    command = f"{python} -m pip install ipykernel"

    if how.startswith("ask-declined-on-terminal"):
        # Detached, the supervisor relays the question to the terminal `up` started from.
        status, stderr = up_on_a_pty(profiles, "k", "n",
                                     *(["--detach"] if how.endswith("detached") else []))
        assert status == ExitCode.REMOTE_SETUP, stderr
        assert f"The kernel's Python {python} (Python " in stderr
        assert f"error: the kernel's Python {python} has no ipykernel; install it with: " \
            f"{command}" in stderr
        assert "Traceback" not in stderr
    else:
        result = cli(profiles, "up", "k")
        line = assert_one_error_line(result, ExitCode.REMOTE_SETUP, command)
        assert line.startswith(f"error: the kernel's Python {python} has no ipykernel")
        if how == "ask-without-terminal":
            assert "no terminal to ask on" in result.stderr
    assert not list((tmp_path / "bare").rglob("ipykernel"))  # nothing was installed
    assert_nothing_left(box, port, isolated)


@pytest.mark.integration
def test_install_ipykernel_yes_installs_it_into_that_python(
    clean_remote: Sandbox, tmp_path: Path, start_up: Any, isolated: Isolated,
) -> None:
    """Realistic remote (its pip configuration in place, the package index reached
    through the sandbox's proxy): a fresh venv with pip but no ipykernel."""
    box = clean_remote
    prefix = tmp_path / "fresh"
    python = python_env(prefix, ipykernel=False, pip=True)
    port = local_port()
    profiles = write_profiles(tmp_path / "profiles.yaml", {"y": sandbox_profile(
        box, "y", port, kernel={"python": str(python), "install_ipykernel": True})})
    up = start_up("y", "--profiles", str(profiles))
    _, token = up.wait_ready(INSTALL_TIMEOUT)
    assert f"installing ipykernel: {python} -m pip install ipykernel" in up.stderr
    assert "Successfully installed" in up.stderr
    with DirectClient(port, token, timeout=30) as direct:
        seen = report(direct, token)
    assert seen["executable"] == str(python)
    assert seen["ipykernel"].startswith(str(prefix))  # its own copy, not a shared one
    up.interrupt()
    assert up.wait(EXIT_TIMEOUT) == ExitCode.OK, up.describe()
    assert_nothing_left(box, port, isolated)


# --- nothing another user can plant ------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("how", ["group-writable", "another-owner"])
def test_an_unsafe_cache_dir_is_refused(
    how: str, clean_remote: Sandbox, tmp_path: Path, isolated: Isolated,
) -> None:
    """Fresh remote (bash) whose cache dir another user could write to or owns."""
    box = clean_remote
    user: RemoteUser = remote_user(tmp_path, "/bin/bash", {
        ".bashrc": 'export XDG_CACHE_HOME="$HOME/.cache"\n'})
    cache = user.home / ".cache" / "remote-runtime"
    cache.mkdir(parents=True)
    if how == "group-writable":
        cache.chmod(0o770)
    else:
        os.chown(cache, 65534, 65534)
    port = local_port()
    profiles = write_profiles(tmp_path / "profiles.yaml", {"c": user.profile(box, "c", port)})
    result = cli(profiles, "up", "c")
    line = assert_one_error_line(result, ExitCode.REMOTE_SETUP, str(cache))
    if how == "group-writable":
        assert "is writable by its group (mode 0770)" in line
        assert f"chmod go-w {cache}" in result.stderr
    else:
        assert "belongs to another user (uid 65534" in line
    assert not (cache / "envs").exists() and not (cache / "runs").exists()
    assert_nothing_left(box, port, isolated)
