"""The orchestration of `up`: provider, ssh, remote, forwarder, health, state.

Data flows one way: profile -> endpoint -> SSH session -> remote server
(port, token) -> local forwarder on the same port -> health report -> state
record. `Runtime.close()` tears down in reverse order on every exit path and
says what it did.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from . import health, jupyter, providers, ssh, state
from .errors import (
    HealthCheckError,
    PortInUseError,
    RemoteRuntimeError,
    RemoteSetupError,
    SSHError,
)
from .forwarder import Forwarder
from .heartbeat import Heartbeat
from .profiles import Profile
from .providers import Progress
from .remote import Probe, RemoteHost, ServerHandle

PORT_SEARCH = 50  # how far past the default port to look for one free on both ends


def _quiet(_: str) -> None:
    pass


@dataclass
class RuntimeInfo:
    """What `up` produced; the CLI renders it as text or JSON."""

    name: str
    kind: str
    target: str
    port: int
    token: str
    run_id: str
    server_pid: int
    jupyter: str
    health: health.HealthReport
    notes: list[str] = field(default_factory=list)
    since: float = field(default_factory=time.time)

    @property
    def url(self) -> str:
        return jupyter.colab_url(self.port, self.token)

    def to_dict(self, *, show_token: bool = True) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "url": self.url if show_token else jupyter.redact(self.url),
            "port": self.port,
            "token": self.token if show_token else None,
            "run_id": self.run_id,
            "server_pid": self.server_pid,
            "jupyter": self.jupyter,
            "since": self.since,
            "pid": os.getpid(),
            "health": self.health.to_dict(),
            "notes": self.notes,
        }


class Runtime:
    """One runtime's resources. Use as a context manager: `close()` always runs."""

    def __init__(
        self,
        profile: Profile,
        *,
        port: int | None = None,
        timeout: float = 180.0,
        accept_new_host_key: bool = False,
        progress: Progress = _quiet,
        passphrase_prompt: ssh.PassphrasePrompt | None = None,
        on_disconnect: str = "stop",
        detached: bool = False,
        log_path: str = "",
    ):
        self.profile = profile
        self.port_request = port
        self.timeout = timeout
        self.accept_new_host_key = accept_new_host_key
        self.progress = progress
        self.passphrase_prompt = passphrase_prompt
        self.on_disconnect = on_disconnect
        self.detached = detached
        self.log_path = log_path
        self.provider: providers.Provider | None = None
        self.endpoint: providers.Endpoint | None = None
        self.heartbeat: Heartbeat | None = None
        self.session: ssh.Session | None = None
        self.remote: RemoteHost | None = None
        self.forwarder: Forwarder | None = None
        self.server: ServerHandle | None = None
        self.info: RuntimeInfo | None = None
        self._record_written = False
        self._token = ""
        self._closed = False
        self._close_lock = threading.Lock()

    # --- start ---------------------------------------------------------------

    def start(self) -> RuntimeInfo:
        profile, progress = self.profile, self.progress
        deadline = time.monotonic() + self.timeout
        # Claimed before any work: a second `up` of the same name is refused, and
        # `down` from another terminal can stop this one while it is starting.
        record = state.Record(
            name=profile.name, kind=profile.kind, pid=os.getpid(), port=0, token="",
            run_id="", target=profile.target, profiles_path=str(profile.source),
            detached=self.detached, log_path=self.log_path, phase="starting",
        )
        state.claim(record)
        self._record_written = True
        self.provider = providers.for_profile(profile)
        endpoint = self.endpoint = self.provider.prepare(progress)
        progress(f"connecting to {endpoint.description or endpoint.host} over SSH")
        self.session = ssh.connect(
            endpoint,
            accept_new_host_key=self.accept_new_host_key,
            passphrase_prompt=self.passphrase_prompt,
            progress=progress,
        )
        self.remote = RemoteHost(self.session, profile.jupyter)
        wanted, explicit = self._wanted_port()
        ports = [wanted] if explicit else list(range(wanted, min(wanted + PORT_SEARCH, 65536)))
        progress("checking the remote host")
        probe = self.remote.probe(ports)
        jupyter_argv = self.remote.ensure_stack(probe, progress)
        port, notes = self._bind_forwarder(probe, wanted, explicit)
        token = self._token = secrets.token_hex(24)
        run_id = f"{profile.name}-{uuid.uuid4().hex[:12]}"
        progress(f"starting Jupyter on port {port} (remote {profile.jupyter.bind_host})")
        self.server = self.remote.start_server(
            run_id=run_id,
            port=port,
            token=token,
            jupyter_argv=jupyter_argv,
            allow_root=probe.is_root,
            on_disconnect=self.on_disconnect,
        )
        self._start_heartbeat()
        progress("checking the runtime through the tunnel, as Colab will")
        report = health.wait_healthy(
            port, token, deadline=max(deadline, time.monotonic() + 15),
            should_stop=lambda: self.server is None or (
                self.server.process is not None and self.server.process.closed),
        )
        if not report.ok:
            failure = report.first_failure
            assert failure is not None
            raise HealthCheckError(
                f"the runtime did not pass the '{failure.name}' check: {failure.detail}",
                details=self._log_tail_for_errors(),
                hint="the remote server log is above; --timeout gives a slow host more time",
            )
        self._check_ipv6_loopback(port, token)
        self.info = RuntimeInfo(
            name=profile.name,
            kind=profile.kind,
            target=endpoint.description or profile.target,
            port=port,
            token=token,
            run_id=run_id,
            server_pid=self.server.server_pid,
            jupyter=" ".join(jupyter_argv),
            health=report,
            notes=notes,
        )
        record.port, record.token, record.run_id = port, token, run_id
        record.target, record.remote_log = self.info.target, self.server.log_path
        record.endpoint, record.phase = endpoint.to_dict(), "up"
        state.claim(record)
        return self.info

    def _check_ipv6_loopback(self, port: int, token: str) -> None:
        """Browsers may resolve `localhost` to ::1: where we listen there, it must answer too."""
        if self.forwarder is None or not any(host == "::1" for host, _ in self.forwarder.bound):
            return
        report = health.quick_check(port, token, host="::1")
        failure = report.first_failure
        if failure is not None:
            raise HealthCheckError(
                f"the runtime answers on 127.0.0.1 but not on [::1]:{port} "
                f"('{failure.name}': {failure.detail})",
                hint="browsers may resolve localhost to ::1; check this machine's IPv6 loopback",
            )

    def _start_heartbeat(self) -> None:
        assert self.session is not None and self.server is not None
        assert self.server.process is not None
        interval = min(30.0, self.profile.jupyter.lease_seconds / 4)
        self.heartbeat = Heartbeat(self.session, self.server.process, interval=interval).start()

    def _wanted_port(self) -> tuple[int, bool]:
        if self.port_request is not None:
            return self.port_request, True
        settings = self.profile.jupyter
        return settings.port, settings.port_explicit

    def _bind_forwarder(self, probe: Probe, wanted: int, explicit: bool) -> tuple[int, list[str]]:
        """Bind the local listener on a port that is free on both ends (DESIGN.md fact 2)."""
        assert self.session is not None
        bind_host = self.profile.jupyter.bind_host
        if explicit and wanted not in probe.free_ports:
            raise PortInUseError(
                f"port {wanted} is already in use on the remote host",
                hint="choose another with --port, or stop what holds it there",
            )
        local_taken: list[int] = []
        for port in probe.free_ports:
            forwarder = Forwarder(self.session.transport, port, bind_host, port)
            try:
                forwarder.start()
            except PortInUseError:
                if explicit:
                    raise PortInUseError(
                        f"port {port} is already in use on this machine",
                        hint="choose another with --port, or stop what holds it here",
                    ) from None
                local_taken.append(port)
                continue
            self.forwarder = forwarder
            notes = []
            if port != wanted:
                where = "this machine" if wanted in local_taken else "the remote host"
                notes.append(f"port {wanted} is taken on {where}; using {port}, "
                             "free on both ends")
                self.progress(notes[-1])
            return port, notes
        raise PortInUseError(
            f"no port from {wanted} to {wanted + PORT_SEARCH - 1} is free on both ends",
            hint="choose one with --port",
        )

    def _log_tail_for_errors(self) -> str | None:
        if self.remote is None or self.server is None or self.session is None:
            return None
        if not self.session.alive:
            return None
        tail = self.remote.log_tail(self.server.run_id, lines=25)
        if self._token:
            # Jupyter logs "GET /?token=..." at INFO: never show the token.
            tail = tail.replace(self._token, "<hidden>")
        return f"remote server log ({self.server.log_path}), last lines:\n{tail}" if tail else None

    # --- while up ------------------------------------------------------------

    def wait(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Block until `stop` is set; raise if the connection or the server dies."""
        while not stop.wait(interval):
            if self.session is None or not self.session.alive:
                self._connection_lost("connection closed")
            process = self.server.process if self.server is not None else None
            if process is not None and process.closed:
                raise RemoteSetupError(
                    "the remote Jupyter server stopped unexpectedly"
                    + (f" ({reason})" if (reason := self._agent_last_words()) else ""),
                    details=self._log_tail_for_errors())
            if self.heartbeat is not None and self.heartbeat.lost.is_set():
                self._connection_lost(self.heartbeat.reason)

    def _connection_lost(self, reason: str) -> NoReturn:
        raise SSHError(
            f"lost the SSH connection to {self.profile.name} ({reason})",
            hint="the remote server stops itself when its connection drops",
        )

    def _agent_last_words(self) -> str:
        """The agent's last line says why the server ended ("server exited with status -9")."""
        assert self.server is not None and self.server.process is not None
        try:
            while (line := self.server.process.read_line(timeout=1.0)) is not None:
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if isinstance(message, dict) and message.get("reason"):
                        return str(message["reason"])
        except SSHError:
            pass
        return ""

    def abort(self) -> None:
        """From another thread: make a running start() fail fast."""
        if self.session is not None:
            self.session.transport.close()

    def reconnect(self) -> None:
        """New SSH connection to the same endpoint; the forwarder keeps its port
        and the remote server (started with on_disconnect='lease') kept running.
        Raises SSHError while the host is unreachable, RemoteSetupError if the
        server is gone (its lease ran out)."""
        assert self.endpoint is not None and self.server is not None
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.session is not None:
            self.session.close()
        session = ssh.connect(self.endpoint, accept_new_host_key=False,
                              passphrase_prompt=self.passphrase_prompt)
        try:
            remote = RemoteHost(session, self.profile.jupyter)
            remote.attach(self.server)
        except BaseException:
            session.close()
            raise
        self.session, self.remote = session, remote
        if self.forwarder is not None:
            self.forwarder.set_transport(session.transport)
        self._start_heartbeat()

    # --- teardown --------------------------------------------------------------

    def close(self) -> list[str]:
        """Tear everything down in reverse order; returns what was done."""
        with self._close_lock:
            if self._closed:
                return []
            self._closed = True
        done: list[str] = []
        if self.heartbeat is not None:
            self.heartbeat.stop()

        def step(label: str, action: Callable[[], str | None]) -> None:
            try:
                result = action()
                done.append(f"{label}{': ' + result if result else ''}")
            except RemoteRuntimeError as exc:
                done.append(f"{label}: failed ({exc.message})")
            except Exception as exc:  # noqa: BLE001 - teardown must go on whatever failed
                done.append(f"{label}: failed ({type(exc).__name__}: {exc})")

        if self.server is not None and self.remote is not None and self.session is not None:
            remote, server = self.remote, self.server
            label = f"stopped the remote Jupyter server (pid {server.server_pid}) and its kernels"
            if self.session.alive:
                step(label, lambda: remote.stop(server))
            elif self.on_disconnect == "lease" and self.endpoint is not None:
                # Between reconnects: one fresh connection to stop it now, not at lease end.
                step(label, self._stop_over_new_connection)
            else:
                done.append("SSH connection already lost: the remote server stops itself "
                            "(it watches its connection)")
        if self.forwarder is not None:
            forwarder = self.forwarder
            step(f"closed the local forwarder on port {forwarder.port}", forwarder.close)
        if self.session is not None:
            session = self.session
            step("closed the SSH connection", session.close)
        if self.provider is not None:
            # The provider says what it did (e.g. "stopped instance ..."), or nothing.
            messages: list[str] = []
            try:
                self.provider.close(messages.append)
            except RemoteRuntimeError as exc:
                messages.append(f"cloud resources: failed ({exc.message})")
            except Exception as exc:  # noqa: BLE001 - teardown must go on whatever failed
                messages.append(f"cloud resources: failed ({type(exc).__name__}: {exc})")
            done.extend(messages)
        if self._record_written:
            state.remove(self.profile.name, pid=os.getpid())
        return done

    def _stop_over_new_connection(self) -> str:
        assert self.endpoint is not None and self.server is not None
        try:
            session = ssh.connect(self.endpoint)
        except SSHError as exc:
            return (f"host unreachable ({exc.message}); the server stops itself within "
                    f"{self.profile.jupyter.lease_seconds}s (its lease)")
        with session:
            self.server.process = None
            return RemoteHost(session, self.profile.jupyter).stop(self.server)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
