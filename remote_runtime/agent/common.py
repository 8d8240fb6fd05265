"""Shared helpers of the agent: JSON answers, run directories, processes."""

import json
import os
import signal
import socket
import sys

from .private import check_tree


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


_CHECKED = set()  # type: set


def base_dir():
    """The agent's cache (0700), checked once per run to be ours alone (`private`)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(cache, "remote-runtime")
    if path not in _CHECKED:
        os.makedirs(path, mode=0o700, exist_ok=True)
        check_tree(path)
        _CHECKED.add(path)
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


def touch(path):
    with open(path, "a"):
        os.utime(path, None)


def detach(target):
    """Run `target()` in a daemon (double fork, new session, stdio on /dev/null) that
    outlives the SSH channel; the caller goes on at once."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        target()
    finally:
        os._exit(0)
