"""How to reach a GCE VM over SSH: its host keys (from guest attributes) and its address
(external, internal, or through IAP with gcloud as the ProxyCommand)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import CloudError
from ...options import Progress
from ...profiles import GCESettings
from ...ssh.streams import command_line
from . import keys
from .api import ComputeApi, api_errors, compute_module


def host_keys(api: ComputeApi, settings: GCESettings, target: str, progress: Progress, *,
              wait_until: float | None = None, poll: float = 1.0,
              cancelled: Callable[[], None] = lambda: None) -> tuple[tuple[str, str], ...]:
    """The host keys the guest published under `hostkeys/`; with `wait_until` (a new VM
    whose guest agent is still starting), poll until they appear or that deadline."""
    gexc = api_errors()
    request = compute_module().GetGuestAttributesInstanceRequest(
        project=api.project, zone=settings.zone, instance=settings.instance,
        query_path="hostkeys/")
    waiting = False
    while True:
        cancelled()
        try:
            with api.calling("reading host keys from guest attributes", target,
                             passthrough=lambda e: isinstance(e, gexc.NotFound | gexc.BadRequest)):
                attributes = api.instances.get_guest_attributes(
                    request=request, timeout=api.request_timeout)
        except (gexc.NotFound, gexc.BadRequest):
            found: tuple[tuple[str, str], ...] = ()
        else:
            found = keys.host_keys_from_guest_attributes(
                [(i.namespace, i.key, i.value) for i in attributes.query_value.items])
        if found:
            progress(f"host keys from guest attributes: {', '.join(k for k, _ in found)}")
            return found
        if wait_until is None:
            progress("the instance publishes no host keys: checking against known_hosts")
            return ()
        if time.monotonic() >= wait_until:
            raise CloudError(f"{target} published no SSH host keys in time",
                             hint="its guest agent may have failed to start: see gcloud "
                             "compute instances get-serial-port-output "
                             f"{settings.instance} --zone {settings.zone}")
        if not waiting:
            progress("waiting for the VM's SSH host keys (guest attributes)")
            waiting = True
        time.sleep(max(0.0, min(poll, wait_until - time.monotonic())))


def address(instance: Any, settings: GCESettings, project: str, target: str,
            environ: Mapping[str, str], progress: Progress) -> tuple[str, str | None]:
    """(host, proxy_command) for the address mode; a profile proxy_command wins."""
    s = settings
    nics = list(instance.network_interfaces)
    internal = nics[0].network_i_p if nics else ""
    external = next((c.nat_i_p for c in (nics[0].access_configs if nics else [])
                     if c.nat_i_p), "")
    mode = s.address
    if mode == "auto":
        mode = "external" if external else ("internal" if s.proxy_command else "iap")
    if mode == "external" and not external:
        raise CloudError(f"{target} has no external IP address",
                         hint="set address: iap (through gcloud) or address: internal")
    if mode == "internal" and not internal:
        raise CloudError(f"{target} has no internal IP address")
    if mode != "iap":
        return (external if mode == "external" else internal), s.proxy_command
    if s.proxy_command:
        return s.instance, s.proxy_command
    if shutil.which("gcloud", path=environ.get("PATH", os.defpath)) is None:
        raise CloudError(f"{target} is reached through IAP, which needs gcloud",
                         hint="install the Google Cloud SDK, or set address: internal "
                         "or a proxy_command in the profile")
    progress(f"connecting through IAP (gcloud compute start-iap-tunnel {s.instance})")
    # As `gcloud compute ssh` does; quoted for how this OS runs ProxyCommands
    # (on Windows the path of gcloud.cmd, which CreateProcess would not find).
    return s.instance, command_line([
        "gcloud", "compute", "start-iap-tunnel", s.instance, str(s.ssh_port),
        "--listen-on-stdin", "--zone", s.zone, "--project", project])
