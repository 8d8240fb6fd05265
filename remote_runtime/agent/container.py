"""Colab's runtime image in Docker, on the remote: what the laptop side
(remote_runtime/container.py, with the image's facts in colab_image.py) asks of the host.

  docker-probe       (stdin: JSON) is Docker usable, directly or through `sudo -n`; GPU
                     support; Docker's data root and its free space; which of the given
                     images are present; removes containers of ours whose run has ended
  container-url RUN  (stdin: JSON) wait for the URL the container prints in its log

Beside it: `registry` (image-size REF [OS/ARCH]: the download size, from the registry)
and `pull` (docker-pull: `docker pull`, its progress relayed as counted steps).
The container itself runs under the server's monitor (`server.py`): its `docker run`
is the monitored process, `stop_argv` stops it and `cleanup_argv` removes it.
Standard library only, Python >= 3.6, one JSON line per answer.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

from .common import alive, emit, read_state, run_dir

PROBE_TIMEOUT = 30
SUDO = ["sudo", "-n"]
# Where Docker's CLI lives when a login's PATH misses it (snap, Docker Desktop's CLI).
DOCKER_PATHS = ("/usr/bin/docker", "/usr/local/bin/docker", "/snap/bin/docker")
GPU_HOOKS = ("nvidia-container-runtime-hook", "nvidia-container-toolkit")


# --- running docker ------------------------------------------------------------------


def run(argv, timeout=PROBE_TIMEOUT, stdin=None):
    """(status, stdout, stderr) of a short command; status 127 when it cannot start."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return 127, "", str(exc)
    try:
        out, err = process.communicate(stdin.encode() if stdin else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return 124, out.decode("utf-8", "replace"), "timed out after %ss" % timeout
    return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def run_engine(argv, log, timeout=60):
    """For the monitor: run a `docker stop`/`docker rm`, saying in its log how it went."""
    status, out, err = run(argv, timeout=timeout)
    log("%s: exit %d %s" % (" ".join(argv[-3:]), status, (err or out).strip()[-200:]))
    return status


def find_docker():
    found = shutil.which("docker")
    if found:
        return found
    for path in DOCKER_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def why(stderr):
    """What a failed `docker version` says, as a reason the laptop side can explain."""
    text = stderr.lower()
    if "permission denied" in text:
        return "permission"
    if "cannot connect" in text or "is the docker daemon running" in text \
            or "no such file" in text or "connection refused" in text:
        return "daemon"
    return "other"


def usable_docker(docker, euid=None):
    """The argv prefix that works (docker, else sudo -n docker), and what failed."""
    status, out, err = run([docker, "version", "--format", "{{.Server.Version}}"])
    if status == 0:
        return {"ok": True, "argv": [docker], "via_sudo": False, "version": out.strip()}
    failure = {"ok": False, "reason": why(err), "detail": err.strip()[-400:]}
    if (os.geteuid() if euid is None else euid) != 0 and shutil.which("sudo"):
        status, out, sudo_err = run(SUDO + [docker, "version", "--format",
                                            "{{.Server.Version}}"])
        if status == 0:
            return {"ok": True, "argv": SUDO + [docker], "via_sudo": True,
                    "version": out.strip()}
        failure["sudo"] = sudo_err.strip()[-200:]
    return failure


# --- docker-probe --------------------------------------------------------------------


def free_bytes(path):
    """Free space for an unprivileged user at `path`, or at the nearest parent we may
    look at (Docker's data root is often root's alone)."""
    while True:
        try:
            stats = os.statvfs(path)
            return stats.f_bavail * stats.f_frsize
        except OSError:
            parent = os.path.dirname(path.rstrip("/"))
            if not parent or parent == path:
                return None
            path = parent


def gpu_support(runtimes):
    """Is there an NVIDIA GPU, and can Docker hand it to a container (`--gpus=all`)?"""
    smi = shutil.which("nvidia-smi")
    has_gpu = bool(smi) and run([smi, "-L"], timeout=20)[0] == 0
    toolkit = "nvidia" in (runtimes or {}) or any(shutil.which(h) for h in GPU_HOOKS)
    return {"gpu": has_gpu, "toolkit": bool(toolkit)}


def remove_ended(docker, uid):
    """Containers of this user's runs whose run has ended (their monitor died before it
    could remove them): remove them. Another user's are left alone."""
    status, out, _err = run(docker + ["ps", "-a", "--filter", "label=remote-runtime.owner=%d" % uid,
                                      "--format", '{{.Names}} {{.Label "remote-runtime.run"}}'])
    removed = []
    for line in out.splitlines() if status == 0 else []:
        parts = line.split()
        if len(parts) != 2:
            continue
        name, run_id = parts
        try:
            state = read_state(run_dir(run_id))
        except SystemExit:
            continue
        monitor = (state or {}).get("monitor_pid")
        ended = state is None or "stopped" in state or not (monitor and alive(int(monitor)))
        if ended and run(docker + ["rm", "--force", name])[0] == 0:
            removed.append(name)
    return removed


def cmd_docker_probe(args):
    config = json.loads(sys.stdin.readline() or "{}")
    docker = find_docker()
    if docker is None:
        emit({"docker": {"ok": False, "reason": "missing"}})
        return 0
    found = usable_docker(docker)
    answer = {"docker": found, "user": _user(), "uid": os.getuid()}
    if not found["ok"]:
        emit(answer)
        return 0
    argv = found["argv"]
    status, out, _err = run(argv + ["info", "--format", "{{json .}}"])
    info = {}
    if status == 0:
        try:
            info = json.loads(out)
        except ValueError:
            info = {}
    root = info.get("DockerRootDir") or "/var/lib/docker"
    answer["info"] = {"root_dir": root, "arch": info.get("Architecture") or os.uname()[4],
                      "runtimes": sorted(info.get("Runtimes") or {}),
                      "version": info.get("ServerVersion") or found.get("version")}
    answer["free_bytes"] = free_bytes(root)
    answer["gpu"] = gpu_support(info.get("Runtimes"))
    images = {}
    for image in config.get("images") or []:
        status, out, _err = run(argv + ["image", "inspect", "--format", "{{.Size}}", image])
        images[image] = {"present": status == 0,
                         "bytes": int(out.strip()) if status == 0 and out.strip().isdigit()
                         else None}
    answer["images"] = images
    answer["removed"] = remove_ended(argv, os.getuid())
    emit(answer)
    return 0


def _user():
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


# --- container-url -------------------------------------------------------------------


def log_tail(path, lines=30):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def cmd_container_url(args):
    """The first URL matching the given pattern in the run's server log (the
    container's output), while the container runs."""
    config = json.loads(sys.stdin.readline() or "{}")
    directory = run_dir(args[0])
    pattern = re.compile(config["pattern"])
    path = os.path.join(directory, "server.log")
    deadline = time.time() + float(config.get("timeout", 300))
    offset, pending = 0, ""
    while True:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
                offset += len(data)
        except OSError:
            data = b""
        pending += data.decode("utf-8", "replace")
        lines = pending.split("\n")
        pending = lines.pop()
        for line in lines:
            match = pattern.search(line)
            if match:
                emit({"ok": True, "port": int(match.group(1)), "token": match.group(2)})
                return 0
        state = read_state(directory) or {}
        if "stopped" in state:
            emit({"error": "exited", "reason": state.get("reason"), "log": log_tail(path)})
            return 1
        if time.time() > deadline:
            emit({"error": "timeout", "log": log_tail(path)})
            return 1
        time.sleep(0.2)
