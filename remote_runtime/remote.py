"""The remote side: make sure a Colab-capable Jupyter exists, start and stop it.

Everything runs through the `agent` package, sent as an argument of `python3 -c` so the
host needs nothing installed beforehand. Every profile value that reaches the
remote shell is quoted (`ssh.quote`); the token travels on the agent's stdin,
never on a command line.
"""

from __future__ import annotations

import base64
import functools
import json
import shlex
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jupyter
from .errors import PortInUseError, RemoteSetupError, SSHError
from .profiles import JupyterSettings
from .ssh import RemoteProcess, Session, quote

PROBE_TIMEOUT = 90.0


AGENT_PACKAGE = "rr_agent"  # the agent's package name on the remote

# Imports the agent package from the sources in argv[1] (a compressed JSON map of
# module name to source): no file is written on the host. Python >= 3.6.
_BOOTSTRAP = (
    "import base64,importlib.abc,importlib.util,json,sys,zlib\n"
    "S=json.loads(zlib.decompress(base64.b64decode(sys.argv.pop(1))).decode())\n"
    "class L(importlib.abc.MetaPathFinder,importlib.abc.Loader):\n"
    " def find_spec(self,name,path,target=None):\n"
    "  if name in S:return importlib.util.spec_from_loader(name,self,"
    f"is_package=name=={AGENT_PACKAGE!r})\n"
    " def create_module(self,spec):return None\n"
    " def exec_module(self,module):exec(compile(S[module.__name__],"
    "'<remote-runtime agent>/'+module.__name__,'exec'),module.__dict__)\n"
    "sys.meta_path.insert(0,L())\n"
    f"from {AGENT_PACKAGE}.main import main\n"
    "sys.exit(main(sys.argv[1:]))"
)


def agent_sources() -> dict[str, str]:
    """The agent package as module name -> source, as the remote imports it."""
    package = Path(__file__).with_name("agent")
    sources = {}
    for path in sorted(package.glob("*.py")):
        name = AGENT_PACKAGE if path.stem == "__init__" else f"{AGENT_PACKAGE}.{path.stem}"
        sources[name] = path.read_text(encoding="utf-8")
    return sources


@functools.cache
def _agent_blob() -> str:
    data = json.dumps(agent_sources(), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(data, 9)).decode()


def agent_command(python: str, *args: str) -> str:
    """The shell command running the agent with `python` on the remote.

    Every piece is quoted, so a hostile `python` or argument cannot inject
    shell syntax.
    """
    parts = [quote(python), "-c", quote(_BOOTSTRAP), _agent_blob(), *(quote(a) for a in args)]
    return " ".join(parts)


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


def _json_line(text: str, what: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise RemoteSetupError(f"unexpected answer from the remote agent during {what}",
                           details=text.strip()[-800:] or None)


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
        result = self.session.run(
            agent_command(self.settings.python, "probe", *map(str, ports)),
            stdin=json.dumps(config) + "\n",
            timeout=PROBE_TIMEOUT,
        )
        if result.status == 127 or ("not found" in result.stderr and not result.stdout):
            raise RemoteSetupError(
                f"no Python interpreter '{self.settings.python}' on the remote host",
                hint="install python3 there, or set jupyter.python in the profile",
            )
        try:
            answer = _json_line(result.stdout, "probe")
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
        launch: dict[str, Any] | None = None,
    ) -> ServerHandle:
        """Start the server under the agent's monitor; the returned handle's
        process must be kept open (it renews the lease) and stopped with `stop`.
        `launch` replaces Jupyter's command with a ready one (`container.launch`: argv,
        stop_argv, cleanup_argv: Colab's image, which makes its own token)."""
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
        process = self.session.start(agent_command(self.settings.python, "start"))
        process.write_line(json.dumps(config))
        line = process.read_line(timeout=60)
        if line is None:
            process.close()
            raise RemoteSetupError("the remote agent exited before starting Jupyter",
                                   details=process.read_stderr()[-800:] or None)
        answer = _json_line(line, "start")
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
        process = self.session.start(
            agent_command(self.settings.python, "attach", handle.run_id, "lease"))
        line = process.read_line(timeout=60)
        answer = _json_line(line, "attach") if line else {"error": "no answer"}
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
                    answer = _json_line(line, "stop")
                    if answer.get("stopped"):
                        return str(answer.get("reason") or "stopped")
            except (SSHError, RemoteSetupError):
                pass  # fall through to a separate stop command
            finally:
                handle.process.close()
        result = self.session.run(agent_command(self.settings.python, "stop", handle.run_id),
                                  timeout=60)
        answer = _json_line(result.stdout, "stop")
        if answer.get("stopped"):
            return str(answer.get("reason") or "already stopped")
        raise RemoteSetupError(f"could not stop the remote server: {answer.get('error')}")

    def status(self, run_id: str) -> dict[str, Any]:
        result = self.session.run(agent_command(self.settings.python, "status", run_id),
                                  timeout=30)
        return _json_line(result.stdout, "status")

    def log_tail(self, run_id: str, lines: int = 30) -> str:
        """The last lines of the server log (for error messages and `logs`)."""
        try:
            result = self.session.run(
                f"RR_LINES={int(lines)} " + agent_command(self.settings.python, "logs", run_id),
                timeout=30,
            )
        except SSHError:
            return ""
        return result.stdout.strip()
