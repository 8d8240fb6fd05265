"""Colab's runtime image in Docker, on the remote: what the laptop side
(remote_runtime/container.py, with the image's facts in colab_image.py) asks of the host.

  docker-probe       (stdin: JSON) is Docker usable, directly or through `sudo -n`; GPU
                     support; Docker's data root and its free space; which of the given
                     images are present; removes containers of ours whose run has ended
  image-size REF [OS/ARCH]  the image's download size for that platform, from its
                     registry (anonymous pull token)
  docker-pull        (stdin: JSON) `docker pull` under a pseudo-terminal, its progress
                     relayed as counted steps (MB)
  container-url RUN  (stdin: JSON) wait for the URL the container prints in its log

The container itself runs under the server's monitor (`server.py`): its `docker run`
is the monitored process, `stop_argv` stops it and `cleanup_argv` removes it.
Standard library only, Python >= 3.6, one JSON line per answer.
"""

import errno
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from .common import alive, emit, read_state, run_dir

PROBE_TIMEOUT = 30
SUDO = ["sudo", "-n"]
# Where Docker's CLI lives when a login's PATH misses it (snap, Docker Desktop's CLI).
DOCKER_PATHS = ("/usr/bin/docker", "/usr/local/bin/docker", "/snap/bin/docker")
GPU_HOOKS = ("nvidia-container-runtime-hook", "nvidia-container-toolkit")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SIZE = re.compile(r"^([\d.]+)\s*([kMGT]?B)$")
_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_LAYER = re.compile(r"^([0-9a-f]{12}): ([A-Za-z ]+?)\s*(?:\[[^\]]*\])?\s*(?:(\S+)/(\S+))?\s*$")


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


# --- image-size: the registry's answer -------------------------------------------------

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


def parse_reference(reference):
    """(registry host, repository, tag or digest) as Docker reads an image reference."""
    name, digest = reference, None
    if "@" in name:
        name, digest = name.split("@", 1)
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        host, path = name.split("/", 1)
    else:
        host, path = "registry-1.docker.io", name
        if "/" not in path:
            path = "library/" + path
    if host == "docker.io":
        host = "registry-1.docker.io"
    return host, path, digest or tag or "latest"


def loopback(host):
    """Is a registry's HOST[:PORT] ([V6]:PORT, or a bare V6 address) this host's loopback?"""
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host
    return name == "localhost" or name.startswith("127.") or name == "::1"


class Registry:
    """Just enough of the registry API for sizes: anonymous bearer tokens, manifests."""

    def __init__(self, host, path, timeout=20):
        self.base = ("http://" if loopback(host) else "https://") + host
        self.path = path
        self.timeout = timeout
        self.token = None

    def open(self, url, headers):
        """GET `url`, an http(s) URL only (a token realm comes from the registry)."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("refusing a non-HTTP URL from the registry: %r" % url[:100])
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - checked above
        return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310

    def get(self, url, accept=ACCEPT):
        headers = {"Accept": accept, "User-Agent": "remote-runtime-agent"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        try:
            with self.open(url, headers) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "")
            if exc.code == 401 and self.token is None and challenge.lower().startswith("bearer"):
                self.token = self.fetch_token(challenge)
                return self.get(url, accept)
            raise

    def fetch_token(self, challenge):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = fields.pop("realm")
        query = urllib.parse.urlencode(fields)
        url = realm + ("?" + query if query else "")
        with self.open(url, {"User-Agent": "remote-runtime-agent"}) as response:
            data = json.loads(response.read().decode())
        return data.get("token") or data.get("access_token")

    def manifest(self, reference):
        return self.get("%s/v2/%s/manifests/%s" % (self.base, self.path, reference))


def image_size(reference, platform=("linux", "amd64")):
    """{"download_bytes": N, "layers": {short id: bytes}} for the platform's manifest."""
    host, path, ref = parse_reference(reference)
    registry = Registry(host, path)
    manifest = registry.manifest(ref)
    if "manifests" in manifest:  # an index: the platform's own manifest
        for entry in manifest["manifests"]:
            wanted = entry.get("platform") or {}
            if (wanted.get("os"), wanted.get("architecture")) == tuple(platform):
                manifest = registry.manifest(entry["digest"])
                break
        else:
            return {"error": "the image has no %s/%s variant" % platform}
    layers = {}
    for layer in manifest.get("layers") or []:
        layers[layer["digest"].split(":", 1)[1][:12]] = int(layer.get("size") or 0)
    config = int((manifest.get("config") or {}).get("size") or 0)
    return {"download_bytes": sum(layers.values()) + config, "layers": layers}


def cmd_image_size(args):
    """image-size REF [OS/ARCH]: the platform the image is for (colab_image.PLATFORM)."""
    platform = tuple(args[1].split("/", 1)) if len(args) > 1 else ("linux", "amd64")
    try:
        emit(image_size(args[0], platform))
    except (TimeoutError, OSError, ValueError, KeyError, urllib.error.URLError) as exc:
        emit({"error": str(exc)[:300] or type(exc).__name__})
    return 0


# --- docker-pull ---------------------------------------------------------------------


def parse_size(text):
    match = _SIZE.match(text or "")
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


class PullProgress:
    """The state of a `docker pull` from its terminal output: each layer's bytes
    downloaded and extracted. Done = (downloaded + extracted) / 2, in bytes."""

    def __init__(self, sizes=None):
        self.sizes = dict(sizes or {})  # short id -> bytes, from the registry
        self.downloaded = {}
        self.extracted = {}
        self.complete = set()

    def feed(self, line):
        match = _LAYER.match(_ANSI.sub("", line).strip())
        if not match:
            return False
        layer, status = match.group(1), match.group(2).strip()
        current, total = parse_size(match.group(3)), parse_size(match.group(4))
        if total and not self.sizes.get(layer):  # the registry's size, else docker's
            self.sizes[layer] = total
        self.sizes.setdefault(layer, 0)
        if status == "Downloading" and current is not None:
            self.downloaded[layer] = current
        elif status == "Extracting" and current is not None:
            self.downloaded[layer] = self.sizes[layer]
            self.extracted[layer] = current
        elif status in ("Download complete", "Verifying Checksum"):
            self.downloaded[layer] = self.sizes[layer]
        elif status in ("Pull complete", "Already exists"):
            self.downloaded[layer] = self.extracted[layer] = self.sizes[layer]
            self.complete.add(layer)
        return True

    @property
    def total(self):
        return sum(self.sizes.values())

    @property
    def done(self):
        return (sum(self.downloaded.values()) + sum(self.extracted.values())) / 2.0

    def step(self, task):
        total_mb = max(1, int(self.total / 10**6))
        done_mb = min(total_mb, int(self.done / 10**6))
        detail = "MB, %d of %d layers" % (len(self.complete), len(self.sizes))
        return {"task": task, "done": done_mb, "total": total_mb, "detail": detail}


def terminal_lines(fd, process):
    """Lines (split on CR or LF) a process writes to the pty `fd`, until it exits."""
    pending = b""
    while True:
        ready = select.select([fd], [], [], 1.0)[0]
        if not ready:
            if process.poll() is not None:
                break
            yield None  # a quiet second: a chance to report anyway
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:  # EIO: the other end closed
            if exc.errno != errno.EIO:
                raise
            chunk = b""
        if not chunk:
            break
        pending += chunk
        parts = re.split(rb"[\r\n]", pending)
        pending = parts.pop()
        for part in parts:
            yield part.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def cmd_docker_pull(args):
    import pty

    config = json.loads(sys.stdin.readline() or "{}")
    image, task = config["image"], config.get("task") or "pulling " + config["image"]
    progress = PullProgress(config.get("layers"))
    master, slave = pty.openpty()
    _wide(slave)
    try:
        process = subprocess.Popen(config["docker"] + ["pull", image], stdin=subprocess.DEVNULL,
                                   stdout=slave, stderr=slave, close_fds=True)
    except OSError as exc:
        emit({"error": str(exc)})
        return 1
    finally:
        os.close(slave)
    tail = []
    last, sent = 0.0, None
    try:
        for line in terminal_lines(master, process):
            if line is not None and not progress.feed(line):
                text = _ANSI.sub("", line).strip()
                if text:
                    tail = (tail + [text])[-20:]
            if time.time() - last >= 0.5 and progress.sizes:
                sent = progress.step(task)
                emit({"step": sent})
                last = time.time()
    finally:
        os.close(master)
    status = process.wait()
    if status != 0:
        emit({"error": "docker pull exited with status %d" % status, "log": "\n".join(tail)})
        return 1
    if sent is not None and sent["done"] < sent["total"]:  # the bar ends full
        sent["done"] = sent["total"]
        emit({"step": sent})
    emit({"ok": True})
    return 0


def _wide(fd):
    """A wide terminal, so docker's progress lines keep their numbers."""
    try:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    except (ImportError, OSError):
        pass


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
