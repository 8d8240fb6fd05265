"""Stage `local`: this machine's side of the tunnel. The port the browser will connect
to (free; held by a runtime of ours; or held by another program, named), bound the way
`up`'s forwarder binds it; loopback on IPv4 and IPv6; what `localhost` resolves to."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import psutil

from .. import procs, redact, state
from ..errors import PortInUseError, StateError
from ..forward.listen import bind_listener, bind_listeners
from .walk import Walk

STAGE = "local"
LOOPBACK = ("127.0.0.1", "::1")  # what the forwarder binds (forward.forwarder)


def run(walk: Walk, *, holder: Callable[[int], dict[str, Any] | None] | None = None) -> None:
    port, explicit = walk.port
    if walk.options.url is not None:
        if walk.url_port is not None:  # (a URL that is not a runtime's fails its routes)
            _url_port(walk, port, holder or listener_of)
    else:
        _port(walk, port, explicit, holder or listener_of)
    _loopback(walk)
    _localhost(walk)


def _port(walk: Walk, port: int, explicit: bool,
          holder: Callable[[int], dict[str, Any] | None]) -> None:
    ours = _our_runtime(port)
    mine = walk.profile is not None and ours is not None and ours.name == walk.profile.name
    if ours is not None:
        text = f"port {port} is held by runtime '{ours.name}' of remote-runtime (pid {ours.pid})"
        if mine:
            walk.ok(STAGE, "port", text + ": the routes are checked through it")
        elif explicit:
            walk.fail(STAGE, "port", text, f"stop it (remote-runtime down {ours.name}) or "
                      "choose another port (--port, jupyter.port)")
        else:
            walk.warn(STAGE, "port", text + "; `up` takes the next port free on both ends")
        return
    taken = _bind_fails(port)
    if taken is None:
        walk.ok(STAGE, "port", f"port {port} is free on 127.0.0.1 and ::1")
        return
    who = _describe(holder(port))
    text = f"port {port} is held by {who}" if who else f"port {port} is taken ({taken})"
    if explicit:
        walk.fail(STAGE, "port", text, "stop it, or choose another port (--port, "
                  "jupyter.port): the browser must reach the runtime on the same port "
                  "it has on the remote")
    else:
        walk.warn(STAGE, "port", text + "; `up` takes the next port free on both ends")


def _url_port(walk: Walk, port: int, holder: Callable[[int], dict[str, Any] | None]) -> None:
    """A runtime started some other way: something must listen on its port here."""
    if _bind_fails(port) is None:
        walk.fail(STAGE, "port", f"nothing listens on port {port} here: the URL cannot reach "
                  "a runtime", "start the tunnel (ssh -L PORT:localhost:PORT HOST) and the "
                  "server, or check the URL's port")
        return
    who = _describe(holder(port))
    walk.ok(STAGE, "port", f"port {port} is held by {who or 'a program'}: the routes are "
            "checked through it")


def _our_runtime(port: int) -> state.Record | None:
    try:
        records, _problems = state.read_all()
    except StateError:
        return None
    return next((r for r in records.values() if r.port == port and r.alive), None)


def _bind_fails(port: int) -> str | None:
    """None when `up`'s forwarder could bind `port` now (the listeners are closed again),
    else why not."""
    try:
        _port, bound = bind_listeners(LOOPBACK, port)
    except PortInUseError as exc:
        return exc.message
    except OSError as exc:
        return exc.strerror or str(exc)
    for _, listener in bound:
        listener.close()
    return None


def listener_of(port: int) -> dict[str, Any] | None:
    """The process listening on TCP `port` on this machine: pid, name, command line (any
    token in it hidden). None when there is none or the OS does not tell (another user's
    process without privileges; macOS without root)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return {"pid": None, "address": conn.laddr.ip}
            argv = procs.cmdline(conn.pid)
            name = ""
            with contextlib.suppress(psutil.Error):
                name = psutil.Process(conn.pid).name()
            return {"pid": conn.pid, "name": name, "cmdline": redact.tokens(" ".join(argv)),
                    "address": conn.laddr.ip}
    return None


def _describe(found: dict[str, Any] | None) -> str:
    if not found:
        return ""
    if found.get("pid") is None:
        return f"another user's program (listening on {found.get('address')})"
    command = str(found.get("cmdline") or found.get("name") or "?")
    if len(command) > 160:
        command = command[:157] + "..."
    return f"process {found['pid']} ({command})"


def _loopback(walk: Walk) -> None:
    try:
        listener = bind_listener("127.0.0.1", 0)
    except OSError as exc:
        walk.fail(STAGE, "loopback ipv4", f"cannot listen on 127.0.0.1: {exc}",
                  "this machine's loopback interface is down or blocked")
        return
    if listener is not None:
        listener.close()
    walk.ok(STAGE, "loopback ipv4", "127.0.0.1 accepts listeners")
    try:
        listener = bind_listener("::1", 0)
    except OSError as exc:
        listener, why = None, exc.strerror or str(exc)
    else:
        why = "this machine has no IPv6 loopback"
    if listener is None:
        walk.warn(STAGE, "loopback ipv6", f"cannot listen on ::1 ({why}): the tunnel "
                  "listens on 127.0.0.1 only, which browsers use for localhost too")
        return
    listener.close()
    walk.ok(STAGE, "loopback ipv6", "::1 accepts listeners (the tunnel listens there too)")


def _localhost(walk: Walk) -> None:
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo("localhost", None,
                                                               type=socket.SOCK_STREAM)}
    except socket.gaierror as exc:
        walk.warn(STAGE, "localhost", f"localhost does not resolve here ({exc.strerror}); "
                  "browsers treat it as loopback anyway")
        return
    stray = sorted(a for a in found if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    shown = ", ".join(sorted(found))
    if stray:
        walk.warn(STAGE, "localhost", f"localhost resolves to {shown}, not only loopback",
                  "fix /etc/hosts (or the OS's hosts file): localhost must be 127.0.0.1 "
                  "and ::1; Chrome and Firefox use loopback for it anyway")
    else:
        walk.ok(STAGE, "localhost", f"localhost resolves to {shown}")
