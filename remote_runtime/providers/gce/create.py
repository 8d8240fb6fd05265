"""The VMs the tool makes, as `gcloud compute instances create` would make them, and
their deletion.

  labels  created-by=remote-runtime, the profile, this machine, and this creation's
          token (so a teardown deletes only what it created)
  body    the Instance resource as REST JSON: machine type, a boot disk from the
          image (a family resolved to its current image) deleted with the VM,
          accelerators, scheduling (Spot; max run duration with the DELETE action),
          network, service account with gcloud's default scopes, metadata (the Deep
          Learning VM's NVIDIA driver install, guest attributes for host keys)
  insert  and wait; no capacity, no Spot capacity and quota are one line each
  delete  the VM and its boot disk
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from ...errors import CloudError
from ...options import Progress
from ...profiles import GCESettings
from ...profiles.gce import CreateSettings, Image
from .api import CAPACITY_CODES, ComputeApi, api_errors, compute_module, operation_error

CREATED_BY = ("created-by", "remote-runtime")
PROFILE_LABEL = "remote-runtime-profile"
HOST_LABEL = "remote-runtime-host"
CREATION_LABEL = "remote-runtime-run"
# What gcloud gives a VM's service account when no --scopes are given.
DEFAULT_SCOPES = tuple("https://www.googleapis.com/auth/" + scope for scope in (
    "devstorage.read_only", "logging.write", "monitoring.write", "pubsub",
    "service.management.readonly", "servicecontrol", "trace.append"))
# Deep Learning VM images install the NVIDIA driver at first boot when asked to.
DRIVER_METADATA = ("install-nvidia-driver", "True")
DELETE_ATTEMPTS = 5


def label_value(text: str) -> str:
    """Text as a label value: lowercase letters, digits, '_' and '-', at most 63."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def machine_label() -> str:
    """This machine and user, as a label value (a hash: no host name leaks into labels)."""
    try:
        with open("/etc/machine-id", encoding="ascii") as handle:  # Linux; else the host name
            machine = handle.read().strip()
    except OSError:
        machine = socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return hashlib.sha256(f"{machine}:{user}".encode()).hexdigest()[:16]


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def labels_for(settings: CreateSettings, profile_name: str, token: str) -> dict[str, str]:
    return {**settings.labels, CREATED_BY[0]: CREATED_BY[1],
            PROFILE_LABEL: label_value(profile_name), HOST_LABEL: machine_label(),
            CREATION_LABEL: token}


def created_by_us(instance: Any, token: str | None = None) -> bool:
    """Does the instance carry our label (and, when given, this creation's token)?"""
    labels = dict(instance.labels or {})
    if labels.get(CREATED_BY[0]) != CREATED_BY[1]:
        return False
    return token is None or labels.get(CREATION_LABEL) == token


def accelerator_text(create: CreateSettings) -> str:
    if create.accelerator is None:
        return create.machine_type
    return f"{create.machine_type} with {create.accelerator.count} x {create.accelerator.type}"


def resolve_image(api: ComputeApi, image: Image, progress: Progress) -> str:
    """The self link of the image to boot from (a family's current image)."""
    gexc = api_errors()
    what = (f"image family '{image.family}'" if image.family else f"image '{image.name}'") + \
        f" in project '{image.project}'"
    try:
        with api.calling(f"resolving {what}", what,
                         passthrough=lambda e: isinstance(e, gexc.NotFound)):
            if image.family:
                found = api.images.get_from_family(project=image.project, family=image.family,
                                                   timeout=api.request_timeout)
            else:
                found = api.images.get(project=image.project, image=image.name,
                                       timeout=api.request_timeout)
    except gexc.NotFound:
        raise CloudError(f"{what} not found",
                         hint=f"list them: gcloud compute images list --project "
                         f"{image.project} --no-standard-images") from None
    if image.family:
        progress(f"image family {image.family} is {found.name} now")
    return str(found.self_link)


def instance_body(settings: GCESettings, *, project: str, image_link: str,
                  labels: dict[str, str], ssh_keys: str | None) -> dict[str, Any]:
    """The Instance resource to insert, as REST JSON."""
    create = settings.create
    assert create is not None
    zone, name = settings.zone, settings.instance
    disk: dict[str, Any] = {"sourceImage": image_link,
                            "diskType": f"zones/{zone}/diskTypes/{create.boot_disk_type}"}
    if create.boot_disk_gb:
        disk["diskSizeGb"] = str(create.boot_disk_gb)
    nic: dict[str, Any] = {"network": _network_link(project, create.network)}
    if create.subnetwork:
        nic["subnetwork"] = create.subnetwork if "/" in create.subnetwork else \
            f"regions/{zone.rsplit('-', 1)[0]}/subnetworks/{create.subnetwork}"
    if create.external_ip:
        nic["accessConfigs"] = [{"name": "External NAT", "type": "ONE_TO_ONE_NAT",
                                 "networkTier": "PREMIUM"}]
    metadata = {"enable-guest-attributes": "TRUE"}  # the guest publishes its host keys
    if create.accelerator is not None:
        metadata[DRIVER_METADATA[0]] = DRIVER_METADATA[1]
    if ssh_keys:
        metadata["ssh-keys"] = ssh_keys
    metadata.update(create.metadata)
    body: dict[str, Any] = {
        "name": name,
        "machineType": f"zones/{zone}/machineTypes/{create.machine_type}",
        "disks": [{"boot": True, "autoDelete": True, "type": "PERSISTENT",
                   "mode": "READ_WRITE", "deviceName": name, "initializeParams": disk}],
        "networkInterfaces": [nic],
        "metadata": {"items": [{"key": k, "value": v} for k, v in metadata.items()]},
        "labels": labels,
        "scheduling": _scheduling(settings),
    }
    if create.accelerator is not None:
        body["guestAccelerators"] = [{
            "acceleratorType": f"zones/{zone}/acceleratorTypes/{create.accelerator.type}",
            "acceleratorCount": create.accelerator.count}]
    if create.service_account != "none":
        body["serviceAccounts"] = [{"email": create.service_account,
                                    "scopes": list(DEFAULT_SCOPES)}]
    return body


def _network_link(project: str, network: str) -> str:
    return network if "/" in network else f"projects/{project}/global/networks/{network}"


def _scheduling(settings: GCESettings) -> dict[str, Any]:
    """As gcloud's --provisioning-model, --max-run-duration, --instance-termination-action:
    a VM with GPUs cannot live-migrate; a Spot VM is never restarted; whatever ends a VM
    that is deleted on exit (preemption, the max run duration) deletes it."""
    create = settings.create
    assert create is not None
    scheduling: dict[str, Any] = {}
    if create.accelerator is not None or create.spot:
        scheduling["onHostMaintenance"] = "TERMINATE"
    if create.spot:
        scheduling.update(provisioningModel="SPOT", automaticRestart=False,
                          instanceTerminationAction="DELETE" if settings.delete_on_exit
                          or create.max_run_minutes else "STOP")
    if create.max_run_minutes:
        scheduling.update(maxRunDuration={"seconds": str(create.max_run_minutes * 60)},
                          instanceTerminationAction="DELETE")
    return scheduling


def insert(api: ComputeApi, settings: GCESettings, body: dict[str, Any], *, target: str,
           deadline: float, progress: Progress, cancelled: Callable[[], None]) -> None:
    """Insert the instance and wait until the operation is done."""
    compute, gexc = compute_module(), api_errors()
    resource = compute.Instance.from_json(json.dumps(body))
    try:
        with api.calling("creating the instance", target,
                         passthrough=lambda e: isinstance(e, gexc.Conflict)):
            # A request id makes a retried insert the same insert (the API dedups it).
            request = compute.InsertInstanceRequest(
                project=api.project, zone=settings.zone, instance_resource=resource,
                request_id=str(uuid.uuid4()))
            op = api.instances.insert_unary(request=request, timeout=api.request_timeout)
    except gexc.Conflict:
        raise CloudError(f"{target} already exists (created meanwhile by someone else?)",
                         hint="run again, or pick another instance name") from None
    api.wait(op, zone=settings.zone, doing="creating the instance", target=target,
             deadline=deadline, progress=progress, failed=_failure(api, settings, target),
             cancelled=cancelled)


def _failure(api: ComputeApi, settings: GCESettings,
             target: str) -> Callable[[list[Any]], CloudError]:
    create = settings.create
    assert create is not None

    def failed(errors: list[Any]) -> CloudError:
        codes = {str(e.code) for e in errors}
        what = accelerator_text(create)
        if codes & set(CAPACITY_CODES) and create.spot:
            return CloudError(
                f"no Spot capacity for {what} in zone {settings.zone} right now",
                hint="retry later, use another zone, or set create.spot: false")
        if codes & set(CAPACITY_CODES):
            return CloudError(f"zone {settings.zone} has no capacity for {what} right now",
                              hint="retry later, or use another zone or machine type")
        return operation_error(errors, doing="creating the instance", project=api.project,
                               target=target)

    return failed


def delete(api: ComputeApi, zone: str, name: str, *, target: str, deadline: float,
           progress: Progress) -> None:
    """Delete the instance (its boot disk goes with it) and wait; retries while the
    instance is not ready to be deleted (an insert still under way)."""
    gexc = api_errors()
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        try:
            with api.calling("deleting the instance", target,
                             passthrough=lambda e: isinstance(e, gexc.BadRequest | gexc.NotFound)):
                op = api.instances.delete_unary(project=api.project, zone=zone, instance=name,
                                                timeout=api.request_timeout)
        except gexc.NotFound:
            return
        except gexc.BadRequest as exc:
            if attempt == DELETE_ATTEMPTS or "not ready" not in str(exc).lower():
                raise CloudError(f"cannot delete {target}: {exc.message}") from None
            time.sleep(2.0 * attempt)
            continue
        api.wait(op, zone=zone, doing="deleting the instance", target=target,
                 deadline=deadline, progress=progress)
        return
