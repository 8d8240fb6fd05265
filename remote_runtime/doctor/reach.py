"""Stage `reach`: the byte stream to the SSH server, hop by hop as `up` opens it: DNS and
TCP for a direct host, the ProxyCommand (GCE's IAP tunnel is one), a channel through
each ProxyJump host; and the server's identification line at the end of it."""

from __future__ import annotations

import time

from ..errors import RemoteRuntimeError, SSHError
from ..ssh import config, probe
from .walk import Walk

STAGE = "reach"


def run(walk: Walk) -> None:
    if walk.blocked(STAGE) or walk.endpoint is None:
        return
    try:
        target = config.resolve(walk.endpoint)
    except RemoteRuntimeError as exc:
        walk.fail(STAGE, "ssh settings", exc.message, exc.hint or "",
                  stops="the SSH settings cannot be resolved")
        return
    for hop in target.hops[:-1]:
        walk.ok(STAGE, "jump host",
                f"{hop.alias} ({hop.user}@{hop.hostname}:{hop.port}) is logged in to first, "
                "as `up` does; its host key is checked too")
    if target.jump is None and not target.proxy_command and not _dns(walk, target):
        return
    started = time.monotonic()
    try:
        link = probe.reach(target, prompter=walk.prompter, progress=walk.progress,
                           accept_new_host_key=walk.options.accept_new_host_key)
    except SSHError as exc:
        walk.fail(STAGE, _name(target), exc.message, exc.hint or _fix(target),
                  stops="the SSH server cannot be reached")
        return
    walk.closing(link.close)
    walk.link = link
    took = f" in {(time.monotonic() - started) * 1000:.0f} ms"
    if link.banner:
        walk.ok(STAGE, _name(target), f"{link.how}: the server answers {link.banner}{took}")
    elif target.jump is not None:
        walk.ok(STAGE, _name(target), f"{link.how}: the jump host opened a channel to "
                f"{target.hostname}:{target.port}{took}")
    else:
        walk.warn(STAGE, _name(target), f"{link.how}: connected, but the server sent no "
                  f"identification within {probe.BANNER_TIMEOUT:.0f}s (a slow server, or "
                  "not SSH); the handshake is tried next")


def _dns(walk: Walk, target: config.Target) -> bool:
    try:
        found = probe.addresses(target.hostname, target.port)
    except SSHError as exc:
        walk.fail(STAGE, "dns", exc.message,
                  "check the host name (ssh.host, or HostName in ~/.ssh/config) and this "
                  "machine's network and DNS", stops="the host name does not resolve")
        return False
    shown = ", ".join(address for _, address in found[:4])
    if target.hostname.replace(".", "").isdigit() or ":" in target.hostname:
        walk.ok(STAGE, "dns", f"{target.hostname} is an address (nothing to resolve)")
    else:
        walk.ok(STAGE, "dns", f"{target.hostname} resolves to {shown}")
    return True


def _name(target: config.Target) -> str:
    if target.jump is not None:
        return "jump channel"
    if target.proxy_command:
        return "iap" if "start-iap-tunnel" in target.proxy_command else "proxycommand"
    return "tcp"


def _fix(target: config.Target) -> str:
    if target.jump is not None:
        return (f"check that {target.jump.alias} can reach {target.hostname}:{target.port} "
                f"(ssh -J {target.jump.alias} {target.hostname})")
    if target.proxy_command and "start-iap-tunnel" in target.proxy_command:
        return ("check `gcloud auth login`, the firewall rule for IAP (35.235.240.0/20 on "
                "port 22) and roles/iap.tunnelResourceAccessor")
    if target.proxy_command:
        return "run the ProxyCommand by hand to see what it says"
    return (f"check that sshd runs on {target.hostname} port {target.port} and that no "
            "firewall is in the way (ssh.host, ssh.port)")
