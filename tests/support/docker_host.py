"""The sandbox host with Docker: its engine (sandbox.docker), a registry in its namespace
serving the Colab image stand-in (support.registry, support.colab_standin), and the
docker CLI run there as the remote user runs it."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_runtime.lifecycle import Resource
from sandbox import Sandbox
from support.colab_standin import StandinImage
from support.env import REPO_ROOT
from support.remote import Teardown

# The stand-in under the name of Colab's image, in the registry on the remote's loopback.
IMAGE_PATH = "colab-images/public/runtime"


class RegistryProcess(Resource):
    """support.registry run inside a namespace, serving one stand-in image."""

    def __init__(self, namespace: str, port: int, image: StandinImage, log: Path,
                 delay: float = 0.0) -> None:
        self.namespace, self.port, self.image, self.log = namespace, port, image, log
        self.delay = delay
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self._started = True
        argv = ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "support.registry",
                str(self.port), str(self.image.tarball.parent), "--delay", str(self.delay)]
        env = {"PYTHONPATH": f"{REPO_ROOT / 'tests'}:{REPO_ROOT}", "PATH": "/usr/bin:/bin"}
        with self.log.open("a") as log:
            self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                          env=env, start_new_session=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError(f"the registry did not start: {self.log.read_text()[-2000:]}")

    def reference(self, tag: str = "standin") -> str:
        return f"127.0.0.1:{self.port}/{IMAGE_PATH}:{tag}"

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None


@dataclass
class DockerBox:
    """A sandbox with Docker, and the stand-in's name in its registry (if it has one)."""

    box: Sandbox
    image: str = ""  # the stand-in's reference in the registry on the remote's loopback
    registry: RegistryProcess | None = None
    teardown: Teardown | None = None  # the current test's (docker_host fixture)

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The docker CLI on the remote, against the sandbox's engine."""
        assert self.box.dockerd is not None
        return self.box.run(["env", f"DOCKER_HOST={self.box.dockerd.host}", "docker", *args],
                            timeout=timeout)

    def containers(self) -> list[dict[str, Any]]:
        assert self.box.dockerd is not None
        return self.box.dockerd.containers()

    def has_image(self, reference: str) -> bool:
        return self.docker("image", "inspect", reference).returncode == 0

    def remove_image(self, reference: str) -> None:
        self.docker("image", "rm", "--force", reference)

    def wait_no_containers(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait for every container to be gone; return what is left at the deadline."""
        deadline = time.monotonic() + timeout
        while (left := self.containers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def listener(self, port: int) -> subprocess.Popen[str]:
        """Something else holding 127.0.0.1:PORT on the remote (kill it when done)."""
        code = (f"import socket,sys,time; s=socket.create_server(('127.0.0.1',{port})); "
                "print('ready',flush=True); time.sleep(3600)")
        assert self.box.namespace is not None
        proc = subprocess.Popen(self.box.namespace.argv([sys.executable, "-c", code]),
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc
