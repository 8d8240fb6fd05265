"""The server under its monitor: start, lease, attach, stop, logs.

The monitor owns the server: it stops it (and every kernel it started) when
asked, when the lease is not renewed for `lease_seconds`, or - when started
with on_disconnect=stop - as soon as the channel that started it closes.

Deadlines and the lease run on the monotonic clock: a step of the wall clock
(NTP, a VM resumed) must neither expire a live lease nor keep a dead one."""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

from . import container, kernel
from . import idle as idle_stop
from .common import (
    alive,
    detach,
    emit,
    port_free,
    read_state,
    run_dir,
    touch,
    write_json,
)
from .private import make_private_dir


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


def stop_server(server, log, stop_argv=None):
    """SIGTERM (the server shuts its kernels down), then SIGKILL what is left. A server
    run by a container engine (`stop_argv`: `docker stop`) is stopped through it first:
    its processes are the engine's, not the client's we started."""
    if stop_argv:
        container.run_engine(stop_argv, log)
    family = descendants(server.pid)
    log("stopping server %d and %d child process(es)" % (server.pid, len(family)))
    signal_all([server.pid], signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.1)
    if server.poll() is None:
        signal_all([server.pid], signal.SIGKILL)
        server.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in family):
        time.sleep(0.1)
    signal_all([p for p in family if alive(p)], signal.SIGKILL)


class Lease:
    """A lease renewed by touching its file. A renewal is any change of the file's
    times (whatever the wall clock says they are); how long ago the last one was is
    measured on the monotonic clock, by the monitor that watches it."""

    def __init__(self, path, seconds):
        self.path = path
        self.seconds = seconds
        self.seen = self._stamp()
        self.renewed = time.monotonic()

    def _stamp(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def idle(self):
        """Seconds since the last renewal (infinite once the file is gone)."""
        stamp = self._stamp()
        if stamp is None:
            return float("inf")
        if stamp != self.seen:
            self.seen = stamp
            self.renewed = time.monotonic()
        return time.monotonic() - self.renewed

    def expired(self):
        return self.idle() > self.seconds


def monitor(config, directory):
    """Runs detached: start the server, watch stop file, lease and server."""
    logfile = open(os.path.join(directory, "monitor.log"), "a")

    def log(text):
        logfile.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text))
        logfile.flush()

    env = dict(os.environ)
    env.update(config.get("env") or {})
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
    lease = Lease(os.path.join(directory, "lease"), config["lease_seconds"])
    stop_file = os.path.join(directory, "stop")
    activity = idle_stop.Activity(config, directory)
    reason = None
    while reason is None:
        time.sleep(0.25)
        activity.poll()
        if server.poll() is not None:
            reason = "server exited with status %d" % server.returncode
        elif os.path.exists(stop_file):
            with open(stop_file) as handle:
                reason = handle.read().strip() or "stop requested"
        elif lease.expired():
            reason = "lease expired (%.0fs without renewal)" % lease.idle()
    log("stopping: " + reason)
    if server.poll() is None:
        stop_server(server, log, config.get("stop_argv"))
    if config.get("cleanup_argv"):  # what outlives the server: a stopped container
        container.run_engine(config["cleanup_argv"], log)
    state.update({"stopped": time.time(), "reason": reason})
    write_json(os.path.join(directory, "state.json"), state)
    try:  # the user's login environment (kernel.py) is not kept after the kernels
        os.remove(os.path.join(directory, "kernel.env"))
    except OSError:
        pass
    log("stopped")


def daemonize(config, directory):
    """Double fork so the monitor outlives the SSH channel that started it."""

    def run():
        signal.signal(signal.SIGTERM,
                      lambda *_: open(os.path.join(directory, "stop"), "w").close())
        monitor(config, directory)

    detach(run)


class StdinLines:
    """Lines of stdin read straight from its fd, so select() sees every pending byte
    (sys.stdin's buffer would hide lines it has already read ahead)."""

    def __init__(self):
        self.fd = sys.stdin.fileno()
        self.pending = b""
        self.eof = False

    def next(self, timeout):
        """One line without its newline; None on timeout; raises EOFError at the end."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            if self.eof:
                raise EOFError
            left = deadline - time.monotonic()
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
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
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
    directory = make_private_dir(run_dir(config["run_id"]))
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
    # Its runtime files (nbserver-*.json, *-open.html, kernel connection files) hold
    # secrets: in the run's private dir, not the world-readable default.
    config["env"] = {"JUPYTER_RUNTIME_DIR": make_private_dir(os.path.join(directory, "runtime"))}
    if config.get("kernel"):
        config["env"].update(kernel.server_env(directory, config["kernel"], workdir))
    touch(os.path.join(directory, "lease"))
    daemonize(config, directory)
    deadline = time.monotonic() + 15
    state = None
    while time.monotonic() < deadline and state is None:
        state = read_state(directory)
        time.sleep(0.05)
    if state is None:
        emit({"error": "the monitor did not start"})
        return 1
    idle_stop.configure(config)
    try:
        emit({"ok": True, "server_pid": state["server_pid"], "monitor_pid": state["monitor_pid"],
              "dir": directory, "log": os.path.join(directory, "server.log")})
    except OSError:
        # The client went away while the server started (Ctrl-C): its channel is closed,
        # so hold() reads EOF at once and acts as on any disconnect, instead of leaving
        # the server to its lease.
        pass
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
