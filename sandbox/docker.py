"""A throwaway Docker engine for the sandbox host: dockerd in the sandbox's network
namespace, so that a container's published port (`-p 127.0.0.1:P:8080`) is on the
remote's loopback, as on a real host.

dockerd enters only the namespace's network (`nsenter --net`): `ip netns exec` would
also remount /sys in a new mount namespace, where dockerd finds no cgroup mounts.
Everything it keeps is under a work directory (data root, exec root, its socket, its
log); its containers' networks are a bridge inside the namespace; no iptables rules,
the userland proxy publishes ports; the vfs storage driver (works on any filesystem).
With `data_size`, the data root is a tmpfs of that size (a host short of disk).
Remote sessions reach it through `DOCKER_HOST` (the sandbox announces it with sshd's
SetEnv). Closing removes every container, stops dockerd and unmounts what it left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from remote_runtime import procs
from remote_runtime.lifecycle import Resource
from sandbox.common import SandboxError, find_binary, wait_until

INSTALL_HINT = "install Docker's engine (apt-get install docker.io)"
START_TIMEOUT = 60.0


class Dockerd(Resource):
    """dockerd for one network namespace; a context manager that cleans up after it."""

    def __init__(self, workdir: Path, namespace: str, *, data_size: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.namespace = namespace
        self.data_size = data_size
        self.data_root = self.workdir / "data"
        self.log_path = self.workdir / "dockerd.log"
        # Short paths: the socket's and containerd's (under the exec root) must fit sun_path.
        self._short = Path(tempfile.mkdtemp(prefix="rr-dk-"))
        self.exec_root = self._short / "x"
        self.socket_path = self._short / "docker.sock"
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpfs = False

    @property
    def host(self) -> str:
        """DOCKER_HOST for clients."""
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        self._started = True
        dockerd = find_binary("dockerd", "/usr/sbin/dockerd", hint=INSTALL_HINT)
        nsenter = find_binary("nsenter", hint="install util-linux")
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        if self.data_size:
            _check(["mount", "-t", "tmpfs", "-o", f"size={self.data_size},mode=0711", "tmpfs",
                    str(self.data_root)], "mounting a tmpfs for dockerd's data root")
            self._tmpfs = True
        config = self.workdir / "daemon.json"
        config.write_text("{}\n")  # not the machine's /etc/docker/daemon.json
        argv = [nsenter, f"--net=/var/run/netns/{self.namespace}", dockerd,
                "--config-file", str(config), "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root), "--host", self.host,
                "--pidfile", str(self._short / "docker.pid"), "--iptables=false",
                "--ip6tables=false", "--storage-driver=vfs"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        if not wait_until(self._ready, timeout=START_TIMEOUT, interval=0.2):
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
            raise SandboxError(f"dockerd did not answer on {self.socket_path}", details=tail)

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise SandboxError("dockerd exited at start",
                               details=self.log_path.read_text(errors="replace")[-2000:])
        try:
            return self.request("GET", "/_ping")[0] == 200
        except OSError:
            return False

    def request(self, method: str, path: str, timeout: float = 30) -> tuple[int, bytes]:
        """One HTTP request to the engine's API over its socket: (status, body)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def containers(self) -> list[dict[str, Any]]:
        """Every container, running or not (the engine's own listing)."""
        status, body = self.request("GET", "/containers/json?all=1")
        if status != 200:
            raise SandboxError(f"listing containers failed ({status})", details=body.decode())
        return list(json.loads(body))

    def remove_containers(self) -> list[str]:
        """Remove every container (force); return their names."""
        names: list[str] = []
        for entry in self.containers():
            self.request("DELETE", f"/containers/{entry['Id']}?force=1&v=1", timeout=60)
            names.extend(str(n).lstrip("/") for n in list(entry.get("Names") or []))
        return names

    def close(self) -> None:
        """Containers removed, dockerd stopped, its mounts undone, its files deleted."""
        try:
            if self._proc is not None and self._proc.poll() is None:
                with contextlib.suppress(OSError, SandboxError, ValueError):
                    self.remove_containers()
            if self._proc is not None:
                procs.stop_child(self._proc, timeout=20)
                self._proc = None
        finally:
            self._unmount()
            shutil.rmtree(self._short, ignore_errors=True)
            shutil.rmtree(self.data_root, ignore_errors=True)

    def _unmount(self) -> None:
        """What dockerd mounted under its roots (netns/default, shm...), deepest first;
        then the tmpfs data root."""
        roots = (str(self.exec_root), str(self.data_root))
        for point in sorted(_mount_points(), key=len, reverse=True):
            if point.startswith(roots) and point != str(self.data_root):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        if self._tmpfs:
            deadline = time.monotonic() + 5
            while subprocess.run(["umount", str(self.data_root)], capture_output=True,
                                 check=False).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            self._tmpfs = False


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        return [line.split()[4].replace("\\040", " ") for line in handle]


def _check(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"{what} failed", details=result.stderr.strip())


def available() -> str | None:
    """Why a sandbox dockerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for name in ("dockerd", "docker", "nsenter"):
        if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists():
            return f"{name} is missing ({INSTALL_HINT})"
    return None
