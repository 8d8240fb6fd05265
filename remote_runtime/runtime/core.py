"""`Runtime`: one runtime's resources, acquired in phases by `start()` and released in
reverse by `close()` (see the package's docstring); while up, `wait()` watches it and
`reconnect()` replaces a lost connection."""

from __future__ import annotations

import os
import threading
import time
from typing import NoReturn

from .. import colab_image, health, kernel, ports, procs, providers, provision, ssh, state
from ..errors import PreemptedError, RemoteRuntimeError, RemoteSetupError, SSHError
from ..forward import Forwarder
from ..heartbeat import Heartbeat
from ..lifecycle import Resource, UndoStack, step
from ..options import Progress, UpOptions, quiet
from ..profiles import Profile
from ..provision import ServerStack
from ..remote import Probe, RemoteHost, ServerHandle
from . import servers
from .info import RuntimeInfo, StartCancelled

# How long close() waits for a cancelled start() in another thread to unwind (a VM
# start or stop operation in flight is waited for: the Compute API cannot cancel it).
START_CANCEL_TIMEOUT = 150.0


class Runtime(Resource):
    """One runtime's resources. Use as a context manager: `close()` always runs.

    A detached runtime (owned by a supervisor) keeps its remote server running
    across a lost connection, under its lease, and reconnects; a foreground one
    stops the server as soon as its connection drops.
    """

    def __init__(
        self,
        profile: Profile,
        options: UpOptions | None = None,
        *,
        progress: Progress = quiet,
        prompter: ssh.Prompter | None = None,
        detached: bool = False,
        log_path: str = "",
    ):
        self.profile = profile
        self.options = options or UpOptions()
        self._report = progress
        self.prompter = prompter
        self.detached = detached
        self.on_disconnect = "lease" if detached else "stop"
        self.log_path = log_path
        self.provider: providers.Provider | None = None
        self.endpoint: ssh.Endpoint | None = None
        self.heartbeat: Heartbeat | None = None
        self.session: ssh.Session | None = None
        self.remote: RemoteHost | None = None
        self.forwarder: Forwarder | None = None
        self.server: ServerHandle | None = None
        self.kernel: kernel.KernelChoice | None = None
        self.info: RuntimeInfo | None = None
        self._record: state.Record | None = None
        self._undo = UndoStack()
        self._token = ""
        self._provider_notes: list[str] = []
        self._notes: list[str] = []  # said while starting, repeated with the URL
        self.ended = ""  # why the runtime ended by itself (an idle stop), when it did
        self._preempted = ""
        self._closed = False
        self._close_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._start_done = threading.Event()
        self._start_done.set()  # no start() under way
        self._start_thread: threading.Thread | None = None
        self._gave_up_waiting = False

    def progress(self, message: str) -> None:
        """Report progress; while a cancelled start() runs, stop it here instead."""
        if self._cancelled.is_set() and not self._start_done.is_set():
            raise StartCancelled("stopped before the runtime was up")
        self._report(message)

    # --- start, in phases ------------------------------------------------------------

    def start(self) -> RuntimeInfo:
        """Bring the runtime up; on failure the caller's close() undoes each phase done."""
        self._started = True
        self._start_thread = threading.current_thread()
        self._start_done.clear()
        try:
            # Every phase below reports progress first: a cancelled start stops there.
            deadline = time.monotonic() + self.options.timeout
            self._claim_record()
            endpoint = self._prepare_target()
            self._connect(endpoint)
            probe, server_stack, wanted, explicit = self._prepare_remote()
            image = server_stack.container is not None
            port, remote_port, notes = self._bind_forwarder(probe, wanted, explicit,
                                                            published=image)
            self._start_server(probe, port, remote_port, server_stack)
            self._start_heartbeat()
            self._undo.push(self._stop_heartbeat)
            routes = server_stack.routes
            if image:  # the lease is held while it starts
                assert self.remote is not None and self.server is not None
                self._token, routes, note = servers.read_container_url(
                    self.remote, self.server, port, deadline, self.progress)
                self._notes += [note] if note else []
            self.progress("checking the runtime through the tunnel, as Colab will")
            report = servers.check_health(
                port, self._token, deadline, routes, server_gone=self._server_gone,
                log_tail=self._log_tail_for_errors, forwarder=self.forwarder)
            return self._publish(endpoint, port, server_stack, report, notes + self._notes,
                                 routes=routes, remote_port=remote_port)
        finally:
            self._start_done.set()
            if self._gave_up_waiting:  # close() did not wait this long: release the rest
                self._undo.unwind()

    def _claim_record(self) -> None:
        """Claimed before any work: a second `up` of the same name is refused, and
        `down` from another terminal can stop this one while it is starting."""
        profile = self.profile
        record = state.Record(
            name=profile.name, kind=profile.kind, pid=os.getpid(), port=0, token="",
            run_id="", target=profile.target, profiles_path=str(profile.source),
            detached=self.detached, log_path=self.log_path, phase="starting",
            profile=profile.base,
            owner_started=procs.started_since_boot(os.getpid()),
        )
        state.claim(record)
        self._record = record
        self._undo.push(self._remove_record)

    def _prepare_target(self) -> ssh.Endpoint:
        self.provider = providers.for_profile(self.profile)
        self._undo.push(self._close_provider)
        self.endpoint = self.provider.prepare(self.progress)
        return self.endpoint

    def _connect(self, endpoint: ssh.Endpoint) -> None:
        self.progress(f"connecting to {endpoint.description or endpoint.host} over SSH")
        self.session = ssh.connect(
            endpoint,
            accept_new_host_key=self.options.accept_new_host_key,
            prompter=self.prompter,
            progress=self.progress,
        )
        self._undo.push(step("closed the SSH connection", self._close_session))
        self.remote = RemoteHost(self.session, self.profile.jupyter)
        assert self.provider is not None
        self._provider_notes = self.provider.after_connect(self.session, self.progress)

    def _prepare_remote(self) -> tuple[Probe, ServerStack, int, bool]:
        assert self.remote is not None
        wanted, explicit = servers.wanted_port(self.options, self.profile)
        self.progress("checking the remote host")
        # A container's remote port can differ from the local one (ports.bind_forwarder_to).
        image = self.profile.jupyter.stack == colab_image.STACK
        probe = self.remote.probe(ports.candidates(wanted, explicit and not image))
        server_stack = provision.ensure_stack(self.remote, probe, self.progress)
        assert self.session is not None
        if image:  # the image's own Python runs its kernels (profiles check: no kernel:)
            return probe, server_stack, wanted, explicit
        self.kernel = kernel.prepare(
            self.session, self.profile.kernel, agent_python=self.profile.jupyter.python,
            workdir=self.profile.jupyter.workdir, confirm=kernel.asking(self.prompter),
            progress=self.progress)
        return probe, server_stack, wanted, explicit

    def _start_server(self, probe: Probe, port: int, remote_port: int,
                      server_stack: ServerStack) -> None:
        assert self.remote is not None
        if server_stack.container is not None:
            self.server = servers.start_container(
                self.remote, self.profile, probe, remote_port, server_stack,
                on_disconnect=self.on_disconnect, progress=self.progress)
        else:
            self.server, self._token = servers.start_jupyter(
                self.remote, self.profile, probe, port, server_stack, self.kernel,
                on_disconnect=self.on_disconnect, progress=self.progress)
        self._undo.push(self._stop_server)

    def _start_heartbeat(self) -> None:
        assert self.session is not None and self.server is not None
        assert self.server.process is not None
        interval = min(30.0, self.profile.jupyter.lease_seconds / 4)
        self.heartbeat = Heartbeat(self.session, self.server.process, interval=interval).start()

    def _server_gone(self) -> bool:
        return self.server is None or (
            self.server.process is not None and self.server.process.closed)

    def _publish(self, endpoint: ssh.Endpoint, port: int, server_stack: ServerStack,
                 report: health.HealthReport, notes: list[str], *,
                 routes: tuple[str, ...], remote_port: int) -> RuntimeInfo:
        """The runtime is up: say so in the state record, and return what was made."""
        assert self.server is not None and self._record is not None
        profile = self.profile
        self.info = RuntimeInfo(
            name=profile.name,
            kind=profile.kind,
            target=endpoint.description or profile.target,
            port=port,
            token=self._token,
            run_id=self.server.run_id,
            server_pid=self.server.server_pid,
            jupyter=" ".join(server_stack.jupyter),
            health=report,
            notes=notes + self._provider_notes,
            stack=server_stack.stack,
            routes=routes,
            remote_port=remote_port,
            kernel=self.kernel.python if self.kernel is not None else "",
        )
        record = self._record
        record.port, record.token, record.run_id = port, self._token, self.server.run_id
        record.target, record.remote_log = self.info.target, self.server.log_path
        record.endpoint, record.phase = endpoint.to_dict(), "up"
        record.stack, record.routes = server_stack.stack, list(routes)
        state.claim(record)
        assert self.provider is not None
        self.provider.runtime_up()
        return self.info

    def _bind_forwarder(self, probe: Probe, wanted: int, explicit: bool, *,
                        published: bool) -> tuple[int, int, list[str]]:
        """The local forwarder: (its port, the remote port, notes). `published`: the
        server is a container's, whose remote port may differ (ports.bind_forwarder_to)."""
        assert self.session is not None
        remote_host = self.profile.jupyter.bind_host
        if published:
            forwarder, remote_port, notes = ports.bind_forwarder_to(
                self.session, probe.free_ports, wanted=wanted, explicit=explicit,
                remote_host=remote_host)
        else:
            forwarder, notes = ports.bind_forwarder(
                self.session, probe.free_ports, wanted=wanted, explicit=explicit,
                remote_host=remote_host)
            remote_port = forwarder.port
        self.forwarder = forwarder
        self._undo.push(step(f"closed the local forwarder on port {forwarder.port}",
                             forwarder.close))
        for note in notes:
            self.progress(note)
        return forwarder.port, remote_port, notes

    def _log_tail_for_errors(self) -> str | None:
        return servers.log_tail(self.remote, self.session, self.server, self._token)

    # --- while up ------------------------------------------------------------

    def wait(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Block until `stop` is set, or the VM's agent stopped the server because it was
        idle (then `ended` says so); raise if the connection or the server dies."""
        while not stop.wait(interval):
            if self.session is None or not self.session.alive:
                self._connection_lost("connection closed")
            process = self.server.process if self.server is not None else None
            if process is not None and process.closed:
                assert self.server is not None
                reason = servers.last_words(self.server)
                if reason.startswith("idle"):
                    self.ended = f"the VM's agent stopped the server: {reason}"
                    return
                self._raise_if_preempted()  # a VM going down may stop the server first
                raise RemoteSetupError(
                    "the remote Jupyter server stopped unexpectedly"
                    + (f" ({reason})" if reason else ""),
                    details=self._log_tail_for_errors())
            if self.heartbeat is not None and self.heartbeat.lost.is_set():
                self._connection_lost(self.heartbeat.reason)

    def _raise_if_preempted(self) -> None:
        when = self.provider.preempted() if self.provider is not None else None
        if when:
            self._preempted = when
            raise PreemptedError(
                f"runtime '{self.profile.name}': its Spot VM was preempted by Compute "
                f"Engine at {when}",
                hint=f"start another one: remote-runtime up {self.profile.profile_name}")

    def _connection_lost(self, reason: str) -> NoReturn:
        self._raise_if_preempted()
        raise SSHError(
            f"lost the SSH connection to {self.profile.name} ({reason})",
            hint="the remote server stops itself when its connection drops",
        )

    def abort(self) -> None:
        """From another thread: make a running start() fail fast (its next progress
        line, phase or SSH call raises; a VM start stops waiting at its next poll)."""
        self._cancelled.set()
        if self.provider is not None:
            self.provider.abort()
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
                              prompter=self.prompter)
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
        """Undo every phase that was done, in reverse order; returns what was done."""
        with self._close_lock:
            if self._closed:
                return []
            self._closed = True
        done: list[str] = []
        if not self._start_done.is_set() and self._start_thread is not threading.current_thread():
            self.abort()
            if not self._start_done.wait(START_CANCEL_TIMEOUT):
                self._gave_up_waiting = True
                done.append(f"the start did not stop within {START_CANCEL_TIMEOUT:.0f}s; "
                            "tearing down what it had acquired so far")
        return done + self._undo.unwind()

    def _stop_heartbeat(self) -> list[str]:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        return []

    def _stop_server(self) -> list[str]:
        server, session = self.server, self.session
        assert server is not None
        label = servers.stop_label(server)
        remote = self.remote
        if remote is not None and session is not None and session.alive:
            return step(label, lambda: remote.stop(server))()
        if self.on_disconnect == "lease" and self.endpoint is not None:
            # Between reconnects: one fresh connection to stop it now, not at lease end.
            endpoint = self.endpoint
            return step(label, lambda: servers.stop_over_new_connection(
                endpoint, server, self.profile))()
        return ["SSH connection already lost: the remote server stops itself "
                "(it watches its connection)"]

    def _close_session(self) -> None:
        if self.session is not None:
            self.session.close()

    def _close_provider(self) -> list[str]:
        """The provider says what it did (e.g. "stopped instance ..."), or nothing."""
        assert self.provider is not None
        messages: list[str] = []
        try:
            self.provider.close(messages.append)
        except RemoteRuntimeError as exc:
            messages.append(f"cloud resources: failed ({exc.message})")
        except Exception as exc:  # noqa: BLE001 - teardown must go on whatever failed
            messages.append(f"cloud resources: failed ({type(exc).__name__}: {exc})")
        return messages

    def _remove_record(self) -> list[str]:
        if self._preempted:  # kept for `list` and `status` to report; `down` removes it
            state.update(self.profile.name, phase="preempted",
                         ended=f"its Spot VM was preempted at {self._preempted}")
            return []
        state.remove(self.profile.name, pid=os.getpid())
        return []
