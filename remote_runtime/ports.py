"""One port, free on both ends: the local forwarder binds the port the remote Jupyter uses.

The extension re-issues proxied requests to the Host the browser used, so the
local and remote ports must be equal (DESIGN.md fact 2). The remote probe says
which candidates are free there; here the forwarder takes the first of them
that it can also bind on this machine. A server in a container re-issues them
inside the container instead, to its own port whatever the remote publishes
(`colab_image`): there the local port is what counts (`bind_forwarder_to`).
"""

from __future__ import annotations

from .errors import PortInUseError
from .forward import Forwarder
from .ssh import Session

PORT_SEARCH = 50  # how far past the default port to look for one free on both ends


def candidates(wanted: int, explicit: bool) -> list[int]:
    """The ports to probe on the remote: the one asked for, or it and the next ones."""
    return [wanted] if explicit else list(range(wanted, min(wanted + PORT_SEARCH, 65536)))


def bind_forwarder(
    session: Session,
    remote_free: list[int],
    *,
    wanted: int,
    explicit: bool,
    remote_host: str,
) -> tuple[Forwarder, list[str]]:
    """A started forwarder on the first of `remote_free` that is free here too, and notes
    for the user when that is not `wanted`. An explicit port that is taken is an error
    naming the side that holds it."""
    if explicit and wanted not in remote_free:
        raise PortInUseError(
            f"port {wanted} is already in use on the remote host",
            hint="choose another with --port, or stop what holds it there",
        )
    local_taken: list[int] = []
    for port in remote_free:
        forwarder = Forwarder(session.transport, port, remote_host, port)
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
        notes = []
        if port != wanted:
            where = "this machine" if wanted in local_taken else "the remote host"
            notes.append(f"port {wanted} is taken on {where}; using {port}, free on both ends")
        return forwarder, notes
    raise PortInUseError(
        f"no port from {wanted} to {wanted + PORT_SEARCH - 1} is free on both ends",
        hint="choose one with --port",
    )


def bind_forwarder_to(
    session: Session,
    remote_free: list[int],
    *,
    wanted: int,
    explicit: bool,
    remote_host: str,
) -> tuple[Forwarder, int, list[str]]:
    """For a server that does not see the remote port (a container publishes it: the
    port its requests are re-issued to is its own, inside): the local port is `wanted`
    (or, when not explicit and taken here, the next one free here), and the remote port
    the same number where free there, else the first of `remote_free`. Returns the
    started forwarder, the remote port and notes for the user."""
    if not remote_free:
        raise PortInUseError(
            f"no port from {wanted} to {wanted + PORT_SEARCH - 1} is free on the remote host",
            hint="stop what holds them there")
    notes: list[str] = []
    last = wanted if explicit else min(wanted + PORT_SEARCH, 65536) - 1
    for local in range(wanted, last + 1):
        remote = local if local in remote_free else remote_free[0]
        forwarder = Forwarder(session.transport, local, remote_host, remote)
        try:
            forwarder.start()
        except PortInUseError:
            if explicit:
                raise PortInUseError(
                    f"port {local} is already in use on this machine",
                    hint="choose another with --port, or stop what holds it here",
                ) from None
            continue
        if local != wanted:
            notes.append(f"port {wanted} is taken on this machine; using {local}")
        if remote != local:
            notes.append(f"port {local} is taken on the remote host; the server is "
                         f"published on {remote} there, forwarded from localhost:{local}")
        return forwarder, remote, notes
    raise PortInUseError(
        f"no port from {wanted} to {last} is free on this machine",
        hint="choose one with --port",
    )
