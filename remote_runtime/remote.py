"""The remote side: make sure a Colab-capable Jupyter exists, start and stop it.

Everything runs through the `agent` package, sent with each call (`bootstrap`) so the
host needs nothing installed beforehand. Every profile value that reaches the
remote shell is quoted (`ssh.quote`); the token travels on the agent's stdin,
never on a command line.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import jupyter
from .bootstrap import refusal, run_agent, start_agent
from .errors import PortInUseError, RemoteSetupError, SSHError
from .options import Progress, Step
from .profiles import JupyterSettings
from .ssh import RemoteProcess, Session

PROBE_TIMEOUT = 90.0


@dataclass
class Probe:
    python: str
    version: tuple[int, int]
    uid: int
    user: str
    home: str
    base: str
    candidates: list[dict[str, Any]]
    free_ports: list[int]
    # Only for a Python too old to host the server: the host's usable interpreters.
    other_pythons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_root(self) -> bool:
        return self.uid == 0


@dataclass
class ServerHandle:
    """A server started under the agent's monitor; `process` holds its lease."""

    run_id: str
    port: int
    server_pid: int
    monitor_pid: int
    log_path: str
    jupyter: list[str]
    process: RemoteProcess | None = field(default=None, repr=False)
    stack: str = "classic"


def agent_answer(text: str, what: str) -> dict[str, Any]:
    """The agent's answer: its last JSON object line (a refusal is raised)."""
    refused = refusal(text)
    if refused is not None:
        raise refused
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise RemoteSetupError(f"unexpected answer from the remote agent during {what}",
                           details=text.strip()[-800:] or None)


def follow_steps(process: RemoteProcess, progress: Progress, *, silence: float,
                 stopped: str) -> Iterator[dict[str, Any]]:
    """The messages of a long agent command (a build, a pull): its counted steps shown
    as progress, every other message yielded. Raises RemoteSetupError(`stopped`) when it
    ends without saying how, or says nothing for `silence` seconds."""
    while True:
        line = process.read_line(timeout=silence)
        if line is None:
            raise RemoteSetupError(stopped, details=process.read_stderr()[-800:] or None)
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict):
            continue
        if "step" in message:
            step = message["step"]
            progress(Step(str(step["task"]), int(step["done"]), int(step["total"]),
                          str(step.get("detail", ""))))
        else:
            yield message


class RemoteHost:
    """The Jupyter side of one SSH session."""

    def __init__(self, session: Session, settings: JupyterSettings):
        self.session = session
        self.settings = settings

    def _command_argv(self) -> list[str] | None:
        if not self.settings.command:
            return None
        try:
            argv = shlex.split(self.settings.command)
        except ValueError as exc:
            raise RemoteSetupError(f"jupyter.command cannot be parsed: {exc}") from None
        return argv or None

    def probe(self, ports: list[int]) -> Probe:
        """One round trip: interpreter, user, Jupyter candidates, free ports."""
        config = {
            "bind_host": self.settings.bind_host,
            "command": self._command_argv(),
            "check_existing": self.settings.env != "managed",
        }
        result = run_agent(self.session, self.settings.python, "probe", *map(str, ports),
                           stdin=json.dumps(config) + "\n", timeout=PROBE_TIMEOUT)
        if (refused := refusal(result.stdout)) is not None:
            raise refused
        if result.status == 127 or ("not found" in result.stderr and not result.stdout):
            raise RemoteSetupError(
                f"no Python interpreter '{self.settings.python}' on the remote host",
                hint="install python3 there, or set jupyter.python in the profile",
            )
        try:
            answer = agent_answer(result.stdout, "probe")
        except RemoteSetupError:
            # Not Python at all (perl, false) or too old to run the agent: say which.
            raise RemoteSetupError(
                f"'{self.settings.python}' on the remote host could not run the agent "
                f"(exit status {result.status})",
                hint="jupyter.python must name a Python 3.6 or newer interpreter",
                details=(result.stderr or result.stdout).strip()[-800:] or None,
            ) from None
        if "error" in answer or result.status != 0:
            raise RemoteSetupError("the remote agent failed to start",
                                   details=(result.stderr or result.stdout)[-800:])
        version = answer["version"]
        return Probe(
            python=answer["python"],
            version=(int(version[0]), int(version[1])),
            uid=int(answer["uid"]),
            user=str(answer["user"]),
            home=str(answer["home"]),
            base=str(answer["base"]),
            candidates=list(answer["candidates"]),
            free_ports=[int(p) for p in answer["free_ports"]],
            other_pythons=list(answer.get("other_pythons") or []),
        )

    def start_server(
        self,
        *,
        run_id: str,
        port: int,
        token: str,
        jupyter_argv: list[str],
        allow_root: bool,
        on_disconnect: str,
        idle_stop_seconds: float | None = None,
        stack: str = "classic",
        kernel: dict[str, Any] | None = None,
        launch: dict[str, Any] | None = None,
    ) -> ServerHandle:
        """Start the server under the agent's monitor; the returned handle's
        process must be kept open (it renews the lease) and stopped with `stop`.
        `kernel` (`kernel.KernelChoice.to_agent()`) makes the user's Python its default
        kernel. `launch` replaces Jupyter's command with a ready one (`container.launch`:
        argv, stop_argv, cleanup_argv: Colab's image, which makes its own token)."""
        config = {
            "run_id": run_id,
            "port": port,
            "bind_host": self.settings.bind_host,
            "token": token,
            "workdir": self.settings.workdir,
            "lease_seconds": self.settings.lease_seconds,
            "on_disconnect": on_disconnect,
            # The VM's agent powers it off after this long with nothing running (None: never).
            "idle_stop_seconds": idle_stop_seconds,
            "kernel": kernel,
        }
        if launch is not None:
            config.update(launch)
        else:
            config["argv"] = jupyter.server_argv(
                jupyter_argv,
                port=port,
                bind_host=self.settings.bind_host,
                config_file="{config_file}",
                notebook_dir="{notebook_dir}",  # "~" is expanded by the agent, on the remote
                allow_root=allow_root,
                stack=stack,
            )
            config["server_config"] = jupyter.server_config_py(stack)
        process = start_agent(self.session, self.settings.python, "start")
        process.write_line(json.dumps(config))
        line = process.read_line(timeout=60)
        if line is None:
            process.close()
            raise RemoteSetupError("the remote agent exited before starting Jupyter",
                                   details=process.read_stderr()[-800:] or None)
        answer = agent_answer(line, "start")
        if answer.get("error") == "port_in_use":
            process.close()
            raise PortInUseError(f"port {port} is already in use on the remote host")
        if not answer.get("ok"):
            process.close()
            raise RemoteSetupError(f"starting Jupyter failed: {answer.get('error', answer)}")
        return ServerHandle(
            run_id=run_id,
            port=port,
            server_pid=int(answer["server_pid"]),
            monitor_pid=int(answer["monitor_pid"]),
            log_path=str(answer["log"]),
            jupyter=jupyter_argv,
            process=process,
            stack=stack,
        )

    def attach(self, handle: ServerHandle) -> None:
        """After a reconnect: hold the lease of a server that kept running."""
        process = start_agent(self.session, self.settings.python, "attach", handle.run_id, "lease")
        line = process.read_line(timeout=60)
        answer = agent_answer(line, "attach") if line else {"error": "no answer"}
        if not answer.get("ok"):
            process.close()
            raise RemoteSetupError(
                "the remote Jupyter server is gone: "
                + str(answer.get("reason") or answer.get("error")))
        handle.process = process

    def stop(self, handle: ServerHandle) -> str:
        """Stop the server and its kernels and wait; returns the monitor's reason."""
        if handle.process is not None and not handle.process.closed:
            try:
                handle.process.write_line("stop")
                line = handle.process.read_line(timeout=40)
                if line:
                    answer = agent_answer(line, "stop")
                    if answer.get("stopped"):
                        return str(answer.get("reason") or "stopped")
            except (SSHError, RemoteSetupError):
                pass  # fall through to a separate stop command
            finally:
                handle.process.close()
        result = run_agent(self.session, self.settings.python, "stop", handle.run_id,
                           timeout=60)
        answer = agent_answer(result.stdout, "stop")
        if answer.get("stopped"):
            return str(answer.get("reason") or "already stopped")
        raise RemoteSetupError(f"could not stop the remote server: {answer.get('error')}")

    def status(self, run_id: str) -> dict[str, Any]:
        result = run_agent(self.session, self.settings.python, "status", run_id, timeout=30)
        return agent_answer(result.stdout, "status")

    def log_tail(self, run_id: str, lines: int = 30) -> str:
        """The last lines of the server log (for error messages and `logs`)."""
        try:
            result = run_agent(self.session, self.settings.python, "logs", run_id,
                               env={"RR_LINES": str(int(lines))}, timeout=30)
        except SSHError:
            return ""
        return result.stdout.strip()
