"""The remote server of a runtime: which port it wants, how it starts (a Jupyter stack
under the agent's monitor, or Colab's image in a container), how it is proven healthy
through the tunnel, what its log and its agent's last line say, and how it is stopped.

Functions of data; `Runtime` (runtime/core.py) holds the resources and the undo steps.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Callable

from .. import colab_image, container, health, kernel, redact, ssh
from ..errors import HealthCheckError, SSHError
from ..forward import Forwarder
from ..options import UpOptions
from ..profiles import Profile
from ..provision import ServerStack
from ..remote import Probe, RemoteHost, ServerHandle


def wanted_port(options: UpOptions, profile: Profile) -> tuple[int, bool]:
    """The local (and usually remote) port to try first, and whether the user named it."""
    if options.port is not None:
        return options.port, True
    settings = profile.jupyter
    if settings.stack == colab_image.STACK and not settings.port_explicit:
        return colab_image.DEFAULT_PORT, False  # as the image's documented command
    return settings.port, settings.port_explicit


def new_run_id(profile: Profile) -> str:
    return f"{profile.name}-{uuid.uuid4().hex[:12]}"


def start_jupyter(remote: RemoteHost, profile: Profile, probe: Probe, port: int,
                  server_stack: ServerStack, choice: kernel.KernelChoice | None, *,
                  on_disconnect: str, progress: Callable[[str], None]
                  ) -> tuple[ServerHandle, str]:
    """A Jupyter server with a fresh token on `port`; returns it and the token."""
    token = secrets.token_hex(24)
    progress(f"starting Jupyter on port {port} (remote {profile.jupyter.bind_host})")
    server = remote.start_server(
        run_id=new_run_id(profile),
        port=port,
        token=token,
        jupyter_argv=server_stack.jupyter,
        allow_root=probe.is_root,
        on_disconnect=on_disconnect,
        idle_stop_seconds=profile.idle_stop_seconds,
        stack=server_stack.stack,
        kernel=choice.to_agent() if choice is not None else None,
    )
    return server, token


def start_container(remote: RemoteHost, profile: Profile, probe: Probe, remote_port: int,
                    server_stack: ServerStack, *, on_disconnect: str,
                    progress: Callable[[str], None]) -> ServerHandle:
    """Colab's image under the agent's monitor, published on `remote_port`."""
    plan = server_stack.container
    assert plan is not None
    run_id = new_run_id(profile)
    bind_host = profile.jupyter.bind_host
    progress(f"starting {plan.image} {container.gpu_text(plan)} on remote port "
             f"{remote_port} ({bind_host}), the workdir at {colab_image.WORKDIR_MOUNT}")
    return remote.start_server(
        run_id=run_id, port=remote_port, token="", jupyter_argv=[],
        allow_root=probe.is_root, on_disconnect=on_disconnect,
        idle_stop_seconds=profile.idle_stop_seconds, stack=server_stack.stack,
        launch=container.launch(plan, run_id=run_id, port=remote_port, bind_host=bind_host))


def read_container_url(remote: RemoteHost, server: ServerHandle, port: int, deadline: float,
                       progress: Callable[[str], None]
                       ) -> tuple[str, tuple[str, ...], str | None]:
    """The token from the container's log, the Colab routes to expect
    (`colab_image.routes`: the URL's port against the one the image printed) and a note
    to repeat with the URL, if any."""
    progress("waiting for the container to print its URL")
    timeout = max(deadline - time.monotonic(), colab_image.URL_WAIT_MIN)
    printed, token = container.read_url(remote, server, timeout)
    note = colab_image.routes_note(port, printed)
    if note:
        progress(note)
    return token, colab_image.routes(port, printed), note


def check_health(port: int, token: str, deadline: float, routes: tuple[str, ...], *,
                 server_gone: Callable[[], bool], log_tail: Callable[[], str | None],
                 forwarder: Forwarder | None) -> health.HealthReport:
    """Colab's checks through the tunnel until they pass or `deadline`; raises
    HealthCheckError naming the first failing check, with the server's log."""
    report = health.wait_healthy(port, token, deadline=max(deadline, time.monotonic() + 15),
                                 routes=routes, should_stop=server_gone)
    if not report.ok:
        failure = report.first_failure
        assert failure is not None
        raise HealthCheckError(
            f"the runtime did not pass the '{failure.name}' check: {failure.detail}",
            details=log_tail(),
            hint="the remote server log is above; --timeout gives a slow host more time",
        )
    _check_ipv6_loopback(port, token, forwarder)
    return report


def _check_ipv6_loopback(port: int, token: str, forwarder: Forwarder | None) -> None:
    """Browsers may resolve `localhost` to ::1: where we listen there, it must answer too."""
    if forwarder is None or not any(host == "::1" for host, _ in forwarder.bound):
        return
    failure = health.quick_check(port, token, host="::1").first_failure
    if failure is not None:
        raise HealthCheckError(
            f"the runtime answers on 127.0.0.1 but not on [::1]:{port} "
            f"('{failure.name}': {failure.detail})",
            hint="browsers may resolve localhost to ::1; check this machine's IPv6 loopback",
        )


def log_tail(remote: RemoteHost | None, session: ssh.Session | None,
             server: ServerHandle | None, token: str) -> str | None:
    """The server log's last lines for an error message, token hidden (Jupyter logs
    "GET /?token=..." at INFO); None when it cannot be read."""
    if remote is None or server is None or session is None or not session.alive:
        return None
    tail = redact.text(remote.log_tail(server.run_id, lines=25), token)
    return f"remote server log ({server.log_path}), last lines:\n{tail}" if tail else None


def last_words(server: ServerHandle) -> str:
    """The agent's last line says why the server ended ("server exited with status -9")."""
    assert server.process is not None
    try:
        while (line := server.process.read_line(timeout=1.0)) is not None:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and message.get("reason"):
                    return str(message["reason"])
    except SSHError:
        pass
    return ""


def stop_label(server: ServerHandle) -> str:
    """What teardown says it did to the server."""
    if server.stack == colab_image.STACK:
        name = colab_image.container_name(server.run_id)
        return f"stopped and removed the container {name} (the image stays cached)"
    return f"stopped the remote Jupyter server (pid {server.server_pid}) and its kernels"


def stop_over_new_connection(endpoint: ssh.Endpoint, server: ServerHandle,
                             profile: Profile) -> str:
    """Between reconnects: one fresh connection to stop the server now, not at lease end."""
    try:
        session = ssh.connect(endpoint)
    except SSHError as exc:
        return (f"host unreachable ({exc.message}); the server stops itself within "
                f"{profile.jupyter.lease_seconds}s (its lease)")
    with session:
        server.process = None
        return RemoteHost(session, profile.jupyter).stop(server)
