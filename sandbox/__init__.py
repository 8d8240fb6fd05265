"""A throwaway "remote host" on this machine, for the test suite and the README demo.

`Sandbox` picks one of two shapes (DESIGN.md fact 8), keeping the Jupyter port equal
on both ends either way:

- "netns": as root, a network namespace is the remote host. Its sshd runs in inetd
  mode through a ProxyCommand that enters the namespace; pip inside reaches the package
  index only through a CONNECT proxy (announced with sshd's SetEnv https_proxy).
- "loopback-alias": without namespaces, a listening sshd on 127.0.0.1 and the remote
  Jupyter binds 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux).

With `docker=True` (netns only, when a test asks) the host also runs a Docker engine
of its own (`sandbox.docker`), reached by remote sessions through DOCKER_HOST.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote_runtime import paths
from remote_runtime.lifecycle import Resource
from sandbox import netns
from sandbox.common import SandboxError, kill_and_wait, pids_with_env
from sandbox.docker import Dockerd
from sandbox.sshd import Sshd

if TYPE_CHECKING:
    from sandbox.proxy import ConnectProxy, Relay

__all__ = ["MODES", "Sandbox", "SandboxError", "Sshd", "to_yaml"]

MODES = ("netns", "loopback-alias")
HOST_ALIAS = "sandbox"
UNIX_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin
# Every remote session gets this variable (sshd SetEnv), so processes started on the
# "remote" (a detached Jupyter too) can be found and stopped when the sandbox closes.
MARKER_ENV = "REMOTE_RUNTIME_SANDBOX"


class Sandbox(Resource):
    """A remote host with a real sshd on this machine; a context manager that cleans up."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        mode: str = "auto",
        remote_cache_dir: Path | None = None,
        env: dict[str, str] | None = None,
        docker: bool = False,
        docker_data_size: str | None = None,
    ) -> None:
        if mode not in ("auto", *MODES):
            raise ValueError(f"mode must be auto, netns or loopback-alias, not {mode!r}")
        self._requested_mode = mode
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rr-sandbox-"))
        self.remote_cache_dir = remote_cache_dir or paths.cache_dir() / "sandbox-remote"
        self.env = dict(env or {})  # extra variables every remote session gets (sshd SetEnv)
        self.mode = ""
        self.remote_bind_host = ""
        self.known_hosts_path = self.workdir / "known_hosts"
        self.namespace: netns.Namespace | None = None
        self.proxy: ConnectProxy | None = None
        self.relay: Relay | None = None
        self.sshd: Sshd | None = None
        self.want_docker = docker
        self.docker_data_size = docker_data_size  # a tmpfs of that size as its data root
        self.dockerd: Dockerd | None = None
        self._stack = contextlib.ExitStack()


    # -- lifecycle -----------------------------------------------------------------------------

    def _choose_mode(self) -> str:
        if self._requested_mode == "loopback-alias":
            return "loopback-alias"
        reason = netns.unavailable_reason()
        if reason is None:
            return "netns"
        if self._requested_mode == "netns":
            raise SandboxError(f"sandbox mode netns is unavailable: {reason}")
        return "loopback-alias"

    def start(self) -> None:
        """Bring everything up; on failure tear down what was started and re-raise."""
        self._started = True
        self.mode = self._choose_mode()
        if self.want_docker and self.mode != "netns":
            raise SandboxError("a sandbox with Docker needs the netns mode (root)")
        self._stack = contextlib.ExitStack()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.remote_cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.mode == "netns":
                self._start_netns()
            else:
                self._start_loopback()
        except BaseException:
            self.close()
            raise

    def _start_netns(self) -> None:
        # Imported here: `python -m sandbox.proxy` (the relay) imports this
        # package first, and runpy warns when the package already imported the module.
        from sandbox.proxy import ConnectProxy, Relay

        netns.prune_stale()
        self.remote_bind_host = "127.0.0.1"
        self.namespace = self._stack.enter_context(netns.Namespace())
        if self.want_docker:
            self.dockerd = self._stack.enter_context(Dockerd(
                self.workdir / "docker", self.namespace.name, data_size=self.docker_data_size))
        socket_path = self.workdir / "pip-proxy.sock"
        if len(str(socket_path)) > UNIX_PATH_MAX:
            short = Path(tempfile.mkdtemp(prefix="rr-"))
            self._stack.callback(shutil.rmtree, short, ignore_errors=True)
            socket_path = short / "pip-proxy.sock"
        self.proxy = self._stack.enter_context(ConnectProxy(socket_path))
        relay = Relay(
            socket_path, namespace=self.namespace.name, log_path=self.workdir / "relay.log"
        )
        self.relay = self._stack.enter_context(relay)
        proxy_url = f"http://127.0.0.1:{relay.port}"
        env = {
            "https_proxy": proxy_url,
            "HTTPS_PROXY": proxy_url,
            "no_proxy": "localhost,127.0.0.1,::1",
            "NO_PROXY": "localhost,127.0.0.1,::1",
            "XDG_CACHE_HOME": str(self.remote_cache_dir),
            MARKER_ENV: str(self.workdir),
            **({"DOCKER_HOST": self.dockerd.host} if self.dockerd else {}),
            **self.env,
        }
        self._stack.callback(kill_and_wait, self.remote_pids)
        sshd = Sshd(self.workdir / "sshd", namespace=self.namespace.name, set_env=env)
        self.sshd = self._stack.enter_context(sshd)
        self.known_hosts_path.write_text(sshd.known_hosts_line(HOST_ALIAS) + "\n")

    def _start_loopback(self) -> None:
        self.remote_bind_host = "127.0.0.2"
        env = {"XDG_CACHE_HOME": str(self.remote_cache_dir), MARKER_ENV: str(self.workdir),
               **self.env}
        self._stack.callback(kill_and_wait, self.remote_pids)
        sshd = Sshd(self.workdir / "sshd", listen=("127.0.0.1", 0), set_env=env)
        self.sshd = self._stack.enter_context(sshd)
        self.known_hosts_path.write_text(sshd.known_hosts_line("127.0.0.1") + "\n")

    def close(self) -> None:
        """Stop sshd and its sessions, remote processes, relay, proxy; delete the namespace."""
        try:
            self._stack.close()
        finally:
            self.sshd = self.relay = self.proxy = self.namespace = self.dockerd = None
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # -- what clients need ---------------------------------------------------------------------

    def _running_sshd(self) -> Sshd:
        if self.sshd is None:
            raise SandboxError("the sandbox is not running")
        return self.sshd

    @property
    def https_proxy(self) -> str | None:
        """The proxy URL remote sessions get (netns mode only)."""
        return f"http://127.0.0.1:{self.relay.port}" if self.relay else None

    def profile(self, name: str = HOST_ALIAS, jupyter_port: int = 8888) -> dict[str, Any]:
        """A profile body (the mapping under `profiles: {name: ...}`) that reaches this sandbox."""
        sshd = self._running_sshd()
        ssh: dict[str, Any] = {
            "host": name,
            "port": 22,
            "user": sshd.user,
            "identity_file": str(sshd.client_key),
            "known_hosts": str(self.known_hosts_path),
        }
        if sshd.proxy_command:
            ssh["proxy_command"] = sshd.proxy_command
            line = sshd.known_hosts_line(name)
            if line not in self.known_hosts_path.read_text().splitlines():
                with self.known_hosts_path.open("a") as handle:
                    handle.write(line + "\n")
        else:
            ssh.update(host="127.0.0.1", port=sshd.port)
        jupyter = {
            "port": jupyter_port,
            "env": "managed",
            "python": "python3",
            "workdir": "~",
            "bind_host": self.remote_bind_host,
        }
        # The remote is this machine: its kernel is the Python running the sandbox (the
        # test extras give it ipykernel), as a user's own Python would be on a real host.
        return {"ssh": ssh, "jupyter": jupyter, "kernel": {"python": sys.executable}}

    def write_profiles(
        self, path: Path, name: str = HOST_ALIAS, jupyter_port: int | None = 8888
    ) -> Path:
        """Write a profiles.yaml holding one profile for this sandbox; return its path.
        With `jupyter_port=None` the port is left out: `up` then starts at 8888 and
        takes the next port free on both ends."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / "profiles.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self.profile(name, jupyter_port or 8888)
        if jupyter_port is None:
            del body["jupyter"]["port"]
        text = to_yaml({"profiles": {name: body}})
        path.write_text(f"# written by python -m sandbox ({self.mode})\n{text}")
        return path

    # -- for tests -----------------------------------------------------------------------------

    def run(
        self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the "remote" (inside the namespace when there is one)."""
        if self.namespace is not None:
            return self.namespace.run(argv, env=env, timeout=timeout)
        return subprocess.run(
            argv, capture_output=True, text=True, check=False, env=env, timeout=timeout
        )

    def session_pids(self) -> list[int]:
        """PIDs of the sshd processes serving this sandbox's connections."""
        return self._running_sshd().session_pids()

    def remote_pids(self) -> list[int]:
        """PIDs of processes started through this sandbox's sessions (shells, Jupyter)."""
        return pids_with_env(MARKER_ENV, str(self.workdir))

    def kill_sessions(self) -> list[int]:
        """SIGKILL every sshd session process (drops connections mid-session); return PIDs."""
        return self._running_sshd().kill_sessions()

    def restart_sshd(self) -> None:
        """Listen mode: stop and start sshd on the same port. Inetd mode: kill the sessions."""
        sshd = self._running_sshd()
        if sshd.proxy_command:
            sshd.kill_sessions()
        else:
            sshd.close()
            sshd.start()


def to_yaml(data: dict[str, Any], indent: int = 0) -> str:
    """Block YAML for nested dicts of str/int/float/bool/lists (strings double-quoted,
    JSON-style)."""
    lines = []
    for key, value in data.items():
        prefix = " " * indent + f"{key}:"
        if isinstance(value, dict):
            lines.append(prefix)
            lines.append(to_yaml(value, indent + 2).rstrip("\n"))
        elif isinstance(value, bool | int | float | list):  # a list: JSON's flow style is YAML
            lines.append(f"{prefix} {json.dumps(value)}")
        else:
            lines.append(f"{prefix} {json.dumps(str(value))}")
    return "\n".join(lines) + "\n"
