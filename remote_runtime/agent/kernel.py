"""The kernel Colab starts: the user's own Python, in their login environment.

`kernel` (stdin: one JSON line) finds the Python that `kernel.python` names and
checks that it has ipykernel (installing it when told to). `server_env`, used by
`start`, writes the run's private kernels dir: its `python3` kernelspec runs a
launcher, a POSIX sh script that starts over from an empty environment, applies
the user's login environment (read from their login shell) and `kernel.setup`,
changes to the notebook dir and execs the kernel. Nothing of the server's own
environment (its token, its venv) reaches the kernel.
"""

import json
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

from .common import base_dir, emit
from .private import make_private_dir

MARK = "RR-ENV-6d1f"
# What a login session holds that must not follow the kernel: the SSH session's own
# values, shell bookkeeping, and ours.
SESSION_VARS = frozenset((
    "PWD", "OLDPWD", "SHLVL", "_", "PS1", "PS2", "PS4", "PROMPT_COMMAND",
    "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "SSH_ORIGINAL_COMMAND",
    "JUPYTER_TOKEN", "RR_LINES", "RR_KERNEL_LAUNCH",
))
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DLVM_PYTHON = "/opt/conda/bin/python"

# Prints the environment between marks, so output of startup files around it is ignored.
DUMP_ENV = ('import json,os,sys;sys.stdout.write("\\n%s"+json.dumps(dict(os.environ))+"%s\\n")'
            % (MARK, MARK))

# Run by the kernel's Python (any version, 2.7 included): what it is, and has it ipykernel?
CHECK = """\
import json, sys
try:
    import importlib.util as u
    found = u.find_spec("ipykernel") is not None
except ImportError:
    import imp
    try:
        imp.find_module("ipykernel")
        found = True
    except ImportError:
        found = False
info = {"executable": sys.executable, "prefix": sys.prefix, "ipykernel": found,
        "version": "%d.%d.%d" % tuple(sys.version_info[:3])}
sys.stdout.write("\\n" + MARK + json.dumps(info) + MARK + "\\n")
""".replace("MARK", repr(MARK))

LAUNCHER = """\
# remote-runtime: the kernel Colab starts. Run by /bin/sh; written for one run.
if [ "${RR_KERNEL_LAUNCH-}" != clean ]; then
  # Start over from an empty environment: nothing of the server's (its token)
  # reaches the kernel, only what Jupyter hands each kernel.
  exec /usr/bin/env -i RR_KERNEL_LAUNCH=clean "JPY_PARENT_PID=${JPY_PARENT_PID-}" \\
    "JPY_SESSION_NAME=${JPY_SESSION_NAME-}" /bin/sh "$0" "$@"
fi
unset RR_KERNEL_LAUNCH
[ -n "$JPY_PARENT_PID" ] || unset JPY_PARENT_PID
[ -n "$JPY_SESSION_NAME" ] || unset JPY_SESSION_NAME
_rr_connection_file=${1-}
set --
# The user's login environment, as their login shell left it.
. %(env_file)s
cd %(workdir)s || exit 1
# `source FILE ARGS` as bash has it (dash has only `.`, and without arguments).
command -v source >/dev/null 2>&1 || source() { _rr_file=$1; shift; command . "$_rr_file"; }
_rr_setup() {
  eval "$2" || {
    echo "remote-runtime: kernel.setup line $1 failed (exit status $?): $2" >&2
    exit 1
  }
}
%(setup)s
%(final)s
"""


class KernelError(Exception):
    """`stage` says what failed: "find" (the Python, the setup, the notebook dir) or
    "install" (ipykernel into that Python)."""

    def __init__(self, message, details=None, stage="find"):
        Exception.__init__(self, message)
        self.message = message
        self.details = details
        self.stage = stage


def login_shell():
    """$SHELL (sshd sets it from the passwd entry), else that entry, else sh."""
    shell = os.environ.get("SHELL")
    if not shell:
        try:
            shell = pwd.getpwuid(os.getuid()).pw_shell
        except KeyError:
            shell = ""
    return shell or "/bin/sh"


def shell_argv(shell, command):
    """A login shell running `command`, as a terminal login would start it: argv[0]
    begins with '-' (every shell's sign of a login shell), interactive where the shell
    allows it with -c (bash and zsh read their rc files only then; csh and tcsh
    always read theirs)."""
    name = os.path.basename(shell)
    flags = ["-c"] if name in ("csh", "tcsh") else ["-i", "-c"]
    return ["-" + name] + flags + [command]


def between_marks(text):
    start = text.find(MARK)
    end = text.find(MARK, start + len(MARK)) if start >= 0 else -1
    if end < 0:
        return None
    try:
        return json.loads(text[start + len(MARK):end])
    except ValueError:
        return None


def run_quietly(argv, timeout, executable=None, env=None, cwd=None):
    """(status, stdout, stderr); status is None when `timeout` ran out. Done as soon as
    stdout holds a marked answer (a startup file may leave a background job holding
    the pipe): the process group then has a moment to end before it is killed."""
    proc = subprocess.Popen(argv, executable=executable, env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    data = {out_fd: b"", err_fd: b""}
    deadline = time.time() + timeout
    pending = set(data)
    while pending and data[out_fd].count(MARK.encode()) < 2 and time.time() < deadline:
        ready = select.select(list(pending), [], [], min(0.5, max(0, deadline - time.time())))[0]
        if not ready and proc.poll() is not None:
            break  # it has ended; only something it left in the background holds the pipes
        for fd in ready:
            chunk = os.read(fd, 65536)
            data[fd] += chunk
            if not chunk:
                pending.discard(fd)
    try:
        status = proc.wait(timeout=max(0.1, min(2, deadline - time.time())))
    except subprocess.TimeoutExpired:
        status = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    return status, data[out_fd].decode("utf-8", "replace"), data[err_fd].decode("utf-8", "replace")


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def login_environment(timeout=30):
    """(environment, note): what the user's login shell exports; on failure the SSH
    session's own environment, and a note that says why."""
    shell = login_shell()
    exe = sys.executable
    fallback = dict(os.environ)
    if not exe or any(c in exe for c in "'!\n"):
        return fallback, "cannot hand %r to the login shell" % exe
    command = "'%s' -E -S -c '%s'" % (exe, DUMP_ENV)
    try:
        status, out, err = run_quietly(shell_argv(shell, command), timeout, executable=shell,
                                       cwd=os.path.expanduser("~"))
    except OSError as exc:
        return fallback, "the login shell %s could not start (%s)" % (shell, exc)
    env = between_marks(out)
    if not isinstance(env, dict):
        why = "timed out after %ds" % timeout if status is None else "exit status %s" % status
        # An interactive shell without a terminal says so; that is not the reason.
        detail = last_line("\n".join(line for line in err.splitlines() if not any(
            noise in line for noise in ("job control", "terminal process group", "access tty"))))
        return fallback, "the login shell %s did not report its environment (%s%s)" % (
            shell, why, ": " + detail if detail else "")
    return env, None


def env_file_text(env):
    lines = ["# The login environment the kernel starts from (written by remote-runtime)."]
    for key in sorted(env):
        if NAME.match(key) and key not in SESSION_VARS:
            lines.append("export %s=%s" % (key, shlex.quote(env[key])))
    return "\n".join(lines) + "\n"


def launcher_text(env_file, workdir, setup, final):
    calls = ["_rr_setup %d %s" % (n, shlex.quote(line)) for n, line in enumerate(setup, 1)]
    return LAUNCHER % {
        "env_file": shlex.quote(env_file),
        "workdir": shlex.quote(workdir),
        "setup": "\n".join(calls) or "# (no kernel.setup)",
        "final": final,
    }


def write_private(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def kernel_command(python):
    return 'exec %s -m ipykernel_launcher -f "$_rr_connection_file"' % shlex.quote(python)


# --- which Python ------------------------------------------------------------------------


def runnable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def trusted(path):
    """A Python found by searching (not named by the user) must not be one another user
    could have put there: it, its bin dir and its prefix owned by root or us, and not
    writable by others."""
    uid = os.getuid()
    bindir = os.path.dirname(os.path.abspath(path))
    for item in (path, bindir, os.path.dirname(bindir)):
        st = os.stat(item)
        if st.st_uid not in (0, uid) or st.st_mode & stat.S_IWOTH:
            return False
    return True


def resolve(spec, env, search):
    """(python, why) for kernel.python = `spec` in the environment `env`."""
    path_var = env.get("PATH") or os.defpath
    if spec != "auto":
        python = spec
        if python == "~" or python.startswith("~/"):
            python = os.path.join(env.get("HOME") or os.path.expanduser("~"), python[2:])
        if "/" not in python:
            python = shutil.which(python, path=path_var) or python
        if not runnable(python):
            raise KernelError("kernel.python %s is not an executable file on the remote host"
                              % python)
        return os.path.abspath(python), "kernel.python"
    for var, why in (("CONDA_PREFIX", "the active conda environment"),
                     ("VIRTUAL_ENV", "the active virtualenv")):
        prefix = env.get(var)
        if prefix and runnable(os.path.join(prefix, "bin", "python")):
            return os.path.join(prefix, "bin", "python"), "auto: %s" % why
    for candidate in search:
        if runnable(candidate) and trusted(candidate):
            return candidate, "auto: the Deep Learning VM's conda base"
    found = shutil.which("python3", path=path_var)
    if found:
        return found, "auto: python3 of the login environment"
    raise KernelError("no python3 in the remote login environment (PATH=%s)" % path_var)


def examine(python, env, workdir):
    status, out, err = run_quietly([python, "-c", CHECK], 60, env=env, cwd=workdir)
    info = between_marks(out)
    if not isinstance(info, dict):
        raise KernelError("the kernel's Python %s did not answer as a Python interpreter "
                          "(exit status %s)" % (python, status),
                          details=(err or out).strip()[-800:] or None)
    return info


def install_ipykernel(python, env, workdir):
    argv = [python, "-m", "pip", "install", "--disable-pip-version-check",
            "--progress-bar", "off", "ipykernel"]
    emit({"progress": "installing ipykernel: %s -m pip install ipykernel" % python})
    proc = subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail = []
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        tail = (tail + [line])[-15:]
        if line.startswith(("Collecting", "Successfully", "ERROR", "error:")):
            emit({"progress": line[:160]})
    if proc.wait() != 0:
        raise KernelError("installing ipykernel into %s failed (exit status %d)"
                          % (python, proc.returncode), details="\n".join(tail), stage="install")


# --- the commands ------------------------------------------------------------------------


def expand_workdir(workdir):
    path = os.path.expanduser(workdir or "~")
    if not os.path.isdir(path):
        raise KernelError("jupyter.workdir %s is not a directory on the remote host" % path)
    return path


def environment_after_setup(login_env, setup, workdir):
    """The environment the kernel will have: the launcher run to its end, printing it."""
    scratch = tempfile.mkdtemp(prefix="kernel-check-", dir=base_dir())
    try:
        env_file = os.path.join(scratch, "login.env")
        write_private(env_file, env_file_text(login_env))
        final = "exec %s -E -S -c %s" % (shlex.quote(sys.executable), shlex.quote(DUMP_ENV))
        launcher = os.path.join(scratch, "launch.sh")
        write_private(launcher, launcher_text(env_file, workdir, setup, final))
        status, out, err = run_quietly(["/bin/sh", launcher], 120)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    env = between_marks(out)
    if not isinstance(env, dict):
        ours = [line for line in err.splitlines() if line.startswith("remote-runtime: ")]
        if ours:  # "kernel.setup line 2 failed (exit status 1): source ..."
            message = ours[-1][len("remote-runtime: "):]
        else:
            why = "timed out after 120s" if status is None else (
                last_line(err) or "exit status %s" % status)
            what = "kernel.setup" if setup else "preparing the kernel's environment"
            message = "%s failed on the remote host: %s" % (what, why)
        raise KernelError(message, details=err.strip()[-800:] or None)
    return env


def cmd_kernel(args):
    config = json.loads(sys.stdin.readline() or "{}")
    try:
        answer = prepare(config)
    except KernelError as exc:
        emit({"error": exc.message, "details": exc.details, "stage": exc.stage})
        return 1
    emit(answer)
    return 0


def prepare(config):
    workdir = expand_workdir(config.get("workdir"))
    setup = list(config.get("setup") or [])
    login_env, note = login_environment()
    env = environment_after_setup(login_env, setup, workdir)
    python, why = resolve(config.get("python") or "auto", env,
                          config.get("search", [DLVM_PYTHON]))
    info = examine(python, env, workdir)
    if not info["ipykernel"] and config.get("install"):
        install_ipykernel(python, env, workdir)
        info = examine(python, env, workdir)
        if not info["ipykernel"]:
            raise KernelError("ipykernel is still not importable by %s after installing it"
                              % python, stage="install")
    return {"ok": True, "python": python, "why": why, "version": info["version"],
            "executable": info["executable"], "prefix": info["prefix"],
            "ipykernel": info["ipykernel"], "shell": login_shell(), "note": note}


def server_env(directory, kernel, workdir):
    """Write the run's kernels dir (0700) and return what the server's environment
    needs for it: JUPYTER_PATH with that dir first, so its `python3` is the default
    kernel, and the kernel Python's own kernelspecs (and the user's) still listed."""
    login_env, _note = login_environment()
    data = make_private_dir(os.path.join(directory, "jupyter"))
    spec_dir = os.path.join(data, "kernels", "python3")
    os.makedirs(spec_dir, mode=0o700, exist_ok=True)
    env_file = os.path.join(directory, "kernel.env")
    write_private(env_file, env_file_text(login_env))
    launcher = os.path.join(directory, "kernel-launch.sh")
    write_private(launcher, launcher_text(env_file, workdir, kernel.get("setup") or [],
                                          kernel_command(kernel["python"])))
    spec = {"argv": ["/bin/sh", launcher, "{connection_file}"],
            "display_name": "Python 3", "language": "python", "interrupt_mode": "signal",
            "metadata": {"remote_runtime": {"python": kernel["python"]}}}
    write_private(os.path.join(spec_dir, "kernel.json"), json.dumps(spec, indent=1))
    paths = [data]
    share = os.path.join(kernel.get("prefix") or "", "share", "jupyter")
    if kernel.get("prefix") and os.path.isdir(os.path.join(share, "kernels")):
        paths.append(share)
    if os.environ.get("JUPYTER_PATH"):
        paths.append(os.environ["JUPYTER_PATH"])
    return {"JUPYTER_PATH": os.pathsep.join(paths)}
