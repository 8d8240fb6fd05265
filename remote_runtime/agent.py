"""The remote half: a stdlib-only script run on the host with its own Python.

`remote` sends this file's source as one argument to `python3 -c`, so nothing
is installed on the host but the managed env. It must run on Python >= 3.6 and
import nothing outside the standard library. Every answer is one JSON line.

  probe PORT...     interpreter, user, Jupyter candidates, which ports are free
  ensure-managed    build or reuse the managed venv (stdin: JSON), streams progress
  start             start Jupyter under a monitor (stdin: one JSON line, holds the token)
  attach RUN        renew the lease of a running server over this channel
  stop RUN          stop a server and its kernels, wait for it
  status RUN        is it running
  logs RUN [-f]     the server log

The monitor owns the server: it stops it (and every kernel it started) when
asked, when the lease is not renewed for `lease_seconds`, or - when started
with on_disconnect=stop - as soon as the channel that started it closes.
"""

import fcntl
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

CANDIDATES = ("jupyter", "/opt/conda/bin/jupyter", "~/.local/bin/jupyter")
CHECK_STACK = (
    "import sys, notebook, tornado, jupyter_http_over_ws\n"
    "import notebook.base.handlers\n"
    "v = tuple(int(x) for x in tornado.version.split('.')[:2])\n"
    "ok = notebook.__version__.split('.')[0] == '6' and v < (6, 5)\n"
    "print(notebook.__version__, tornado.version, 'ok' if ok else 'bad')\n"
)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def base_dir():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(cache, "remote-runtime")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def run_dir(run_id):
    if not run_id.replace("-", "").isalnum():
        raise SystemExit("bad run id")
    return os.path.join(base_dir(), "runs", run_id)


def port_free(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As tornado binds: a port with only TIME_WAIT leftovers is free for Jupyter.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def interpreter_of(executable):
    """The Python behind a `jupyter` script (its shebang), or None."""
    try:
        with open(executable, "rb") as handle:
            first = handle.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if parts and os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0] if parts else None


def check_jupyter(argv):
    """Can this jupyter command run the classic server with the extension?"""
    executable = argv[0]
    found = shutil.which(os.path.expanduser(executable))
    if not found:
        return {"path": executable, "ok": False, "reason": "not found"}
    # A command like "python3 -m jupyter" names its interpreter itself.
    python = found if os.path.basename(found).startswith("python") else interpreter_of(found)
    if not python:
        return {"path": found, "ok": False, "reason": "cannot tell which Python it runs on"}
    try:
        out = subprocess.run([python, "-c", CHECK_STACK], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"path": found, "ok": False, "reason": str(exc)}
    words = out.stdout.decode(errors="replace").split()
    if out.returncode != 0 or len(words) != 3:
        last = (out.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return {"path": found, "ok": False, "reason": last[:200]}
    ok = words[2] == "ok"
    reason = "" if ok else "needs notebook 6 and tornado < 6.5, found notebook %s, tornado %s" % (
        words[0], words[1])
    return {"path": found, "argv": [found] + list(argv[1:]), "ok": ok, "reason": reason,
            "python": python,
            "notebook": words[0], "tornado": words[1]}


def cmd_probe(args):
    config = json.loads(sys.stdin.readline() or "{}")
    host = config.get("bind_host", "127.0.0.1")
    names = [config["command"]] if config.get("command") else [[c] for c in CANDIDATES]
    candidates = [check_jupyter(n) for n in names] if config.get("check_existing", True) else []
    managed = managed_dir(stack_requirements(config))
    emit({
        "python": sys.executable,
        "version": list(sys.version_info[:2]),
        "uid": os.getuid(),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid()),
        "home": os.path.expanduser("~"),
        "base": base_dir(),
        "candidates": candidates,
        "managed": os.path.join(managed, "bin", "jupyter") if is_built(managed) else None,
        "free_ports": [p for p in (int(a) for a in args) if port_free(host, p)],
    })


def stack_requirements(config):
    """The package set for this interpreter (Python >= 3.12 needs setuptools too)."""
    extra = config.get("requirements_py312", []) if sys.version_info >= (3, 12) else []
    return list(config.get("requirements", [])) + list(extra)


def managed_dir(requirements):
    digest = hashlib.sha256(json.dumps(sorted(requirements)).encode()).hexdigest()[:12]
    version = "py%d%d" % sys.version_info[:2]
    return os.path.join(base_dir(), "envs", "colab-%s-%s" % (version, digest))


def is_built(env):
    return os.path.exists(os.path.join(env, ".complete"))


def cmd_ensure_managed(args):
    config = json.loads(sys.stdin.readline() or "{}")
    requirements = stack_requirements(config)
    env = managed_dir(requirements)
    os.makedirs(os.path.dirname(env), mode=0o700, exist_ok=True)
    with open(env + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second `up` waits for the first build
        if not is_built(env):
            shutil.rmtree(env, ignore_errors=True)  # a half-built env from a killed run
            steps = [
                ["venv", [sys.executable, "-m", "venv", env]],
                ["pip", [os.path.join(env, "bin", "python"), "-m", "pip", "install",
                         "--disable-pip-version-check", "--progress-bar", "off"] + requirements],
                ["enable", [os.path.join(env, "bin", "jupyter"), "serverextension", "enable",
                            "--py", "jupyter_http_over_ws", "--sys-prefix"]],
            ]
            for name, argv in steps:
                emit({"progress": "%s: %s" % (name, " ".join(argv[-3:]))})
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                tail = []
                for raw in proc.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    tail = (tail + [line])[-15:]
                    if line.startswith(("Collecting", "Successfully", "ERROR", "Installing")):
                        emit({"progress": line[:160]})
                if proc.wait() != 0:
                    emit({"error": "%s failed (exit %d)" % (name, proc.returncode),
                          "log": "\n".join(tail)})
                    return 1
            open(os.path.join(env, ".complete"), "w").close()
    emit({"ok": True, "jupyter": os.path.join(env, "bin", "jupyter")})
    return 0


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive; /proc tells.
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def descendants(pid):
    """Every process below `pid` (kernels run in their own sessions, not its group)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def stop_server(server, log):
    """SIGTERM (the server shuts its kernels down), then SIGKILL what is left."""
    family = descendants(server.pid)
    log("stopping server %d and %d child process(es)" % (server.pid, len(family)))
    signal_all([server.pid], signal.SIGTERM)
    deadline = time.time() + 10
    while time.time() < deadline and server.poll() is None:
        time.sleep(0.1)
    if server.poll() is None:
        signal_all([server.pid], signal.SIGKILL)
        server.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(p) for p in family):
        time.sleep(0.1)
    signal_all([p for p in family if alive(p)], signal.SIGKILL)


def monitor(config, directory):
    """Runs detached: start the server, watch stop file, lease and server."""
    logfile = open(os.path.join(directory, "monitor.log"), "a")

    def log(text):
        logfile.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text))
        logfile.flush()

    env = dict(os.environ)
    env["JUPYTER_TOKEN"] = config["token"]
    workdir = os.path.expanduser(config["workdir"])
    server_log = open(os.path.join(directory, "server.log"), "ab")
    os.chmod(server_log.name, 0o600)
    server = subprocess.Popen(
        config["argv"], env=env, cwd=workdir, stdin=subprocess.DEVNULL,
        stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    state = {"monitor_pid": os.getpid(), "server_pid": server.pid, "port": config["port"],
             "started": time.time()}
    write_json(os.path.join(directory, "state.json"), state)
    log("server %d started on port %d" % (server.pid, config["port"]))
    lease_file = os.path.join(directory, "lease")
    stop_file = os.path.join(directory, "stop")
    reason = None
    while reason is None:
        time.sleep(0.25)
        if server.poll() is not None:
            reason = "server exited with status %d" % server.returncode
        elif os.path.exists(stop_file):
            with open(stop_file) as handle:
                reason = handle.read().strip() or "stop requested"
        else:
            try:
                idle = time.time() - os.stat(lease_file).st_mtime
            except OSError:
                idle = float("inf")
            if idle > config["lease_seconds"]:
                reason = "lease expired (%.0fs without renewal)" % idle
    log("stopping: " + reason)
    if server.poll() is None:
        stop_server(server, log)
    state.update({"stopped": time.time(), "reason": reason})
    write_json(os.path.join(directory, "state.json"), state)
    log("stopped")


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(obj, handle)
    os.replace(tmp, path)


def read_state(directory):
    try:
        with open(os.path.join(directory, "state.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def daemonize(config, directory):
    """Double fork so the monitor outlives the SSH channel that started it."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: open(os.path.join(directory, "stop"), "w").close())
    try:
        monitor(config, directory)
    finally:
        os._exit(0)


def touch(path):
    with open(path, "a"):
        os.utime(path, None)


class StdinLines:
    """Lines of stdin read straight from its fd, so select() sees every pending byte
    (sys.stdin's buffer would hide lines it has already read ahead)."""

    def __init__(self):
        self.fd = sys.stdin.fileno()
        self.pending = b""
        self.eof = False

    def next(self, timeout):
        """One line without its newline; None on timeout; raises EOFError at the end."""
        deadline = time.time() + timeout
        while b"\n" not in self.pending:
            if self.eof:
                raise EOFError
            left = deadline - time.time()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            self.pending += chunk
            self.eof = not chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def hold(directory, on_disconnect, lines=None):
    """Renew the lease for every line read; 'stop' stops; EOF per on_disconnect.

    Ends as soon as the server stops on its own (killed, crashed), saying so, so the
    client sees its channel close instead of holding a lease on nothing.
    """
    lease = os.path.join(directory, "lease")
    lines = lines or StdinLines()
    while True:
        state = read_state(directory) or {}
        if "stopped" in state:
            emit({"stopped": True, "reason": state.get("reason"), "unexpected": True})
            return 1
        try:
            line = lines.next(timeout=1.0)
        except EOFError:
            break
        if line is None:
            continue
        touch(lease)
        if line.strip() == "stop":
            return request_stop(directory, "stopped by remote-runtime")
        if line.strip() == "ping":
            state = read_state(directory) or {}
            emit({"pong": True, "running": "stopped" not in state})
    if on_disconnect == "stop":
        request_stop(directory, "SSH connection closed", wait=False)
    return 0


def request_stop(directory, reason, wait=True):
    state = read_state(directory)
    if state is None or "stopped" in state:
        emit({"stopped": True, "already": True})
        return 0
    with open(os.path.join(directory, "stop"), "w") as handle:
        handle.write(reason)
    if not wait:
        return 0
    deadline = time.time() + 30
    while time.time() < deadline:
        state = read_state(directory) or {}
        if "stopped" in state and not alive(state["monitor_pid"]):
            emit({"stopped": True, "reason": state.get("reason")})
            return 0
        time.sleep(0.1)
    emit({"error": "server did not stop within 30s"})
    return 1


def cmd_start(args):
    lines = StdinLines()  # one reader for the config line and what hold() reads later
    config = json.loads(lines.next(timeout=60) or "{}")
    directory = run_dir(config["run_id"])
    os.makedirs(directory, mode=0o700, exist_ok=True)
    prune_runs(os.path.dirname(directory))
    if not port_free(config["bind_host"], config["port"]):
        emit({"error": "port_in_use", "port": config["port"]})
        return 1
    config_file = os.path.join(directory, "jupyter_notebook_config.py")
    with open(config_file, "w") as handle:
        handle.write(config["server_config"])
    workdir = os.path.expanduser(config["workdir"])
    if not os.path.isdir(workdir):
        emit({"error": "jupyter.workdir %s is not a directory on the remote host" % workdir})
        return 1
    config["argv"] = [a.replace("{config_file}", config_file).replace("{notebook_dir}", workdir)
                      for a in config["argv"]]
    touch(os.path.join(directory, "lease"))
    daemonize(config, directory)
    deadline = time.time() + 15
    state = None
    while time.time() < deadline and state is None:
        state = read_state(directory)
        time.sleep(0.05)
    if state is None:
        emit({"error": "the monitor did not start"})
        return 1
    emit({"ok": True, "server_pid": state["server_pid"], "monitor_pid": state["monitor_pid"],
          "dir": directory, "log": os.path.join(directory, "server.log")})
    return hold(directory, config["on_disconnect"], lines)


def prune_runs(runs):
    """Forget finished runs older than a week (their logs included)."""
    for name in os.listdir(runs):
        path = os.path.join(runs, name)
        state = read_state(path)
        if state and "stopped" in state and time.time() - state["stopped"] > 7 * 86400:
            shutil.rmtree(path, ignore_errors=True)


def cmd_attach(args):
    directory = run_dir(args[0])
    state = read_state(directory)
    if state is None or "stopped" in state:
        emit({"error": "not_running", "reason": (state or {}).get("reason", "unknown run")})
        return 1
    touch(os.path.join(directory, "lease"))
    emit({"ok": True, "server_pid": state["server_pid"]})
    return hold(directory, args[1] if len(args) > 1 else "lease")


def cmd_stop(args):
    return request_stop(run_dir(args[0]), "stopped by remote-runtime")


def cmd_status(args):
    state = read_state(run_dir(args[0]))
    running = bool(state) and "stopped" not in state and alive(state["server_pid"])
    emit({"running": running, "state": state})
    return 0


def cmd_logs(args):
    path = os.path.join(run_dir(args[0]), "server.log")
    follow = "-f" in args
    try:
        handle = open(path, "rb")
    except OSError:
        emit({"error": "no log"})
        return 1
    lines = int(os.environ.get("RR_LINES", "200"))
    data = handle.read()
    sys.stdout.buffer.write(b"\n".join(data.splitlines()[-lines:]) + b"\n")
    sys.stdout.flush()
    while follow:
        chunk = handle.read()
        if chunk:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            continue
        state = read_state(os.path.dirname(path)) or {}
        if "stopped" in state:
            # The server has exited: what it wrote is all there is; end like `tail --pid`.
            sys.stdout.buffer.write(handle.read())
            sys.stdout.flush()
            return 0
        # A closed channel is only noticed on a write, and a quiet log has none: watch
        # stdin (the channel, kept open by the client) for EOF instead of sleeping.
        readable = select.select([sys.stdin], [], [], 0.3)[0]
        if readable and not os.read(sys.stdin.fileno(), 4096):
            return 0
    return 0


COMMANDS = {
    "probe": cmd_probe,
    "ensure-managed": cmd_ensure_managed,
    "start": cmd_start,
    "attach": cmd_attach,
    "stop": cmd_stop,
    "status": cmd_status,
    "logs": cmd_logs,
}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        emit({"error": "usage: agent {%s}" % ",".join(COMMANDS)})
        return 2
    return COMMANDS[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
