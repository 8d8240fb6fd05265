"""VM lifecycle in the fake: insert (validated as the API does), delete, image families,
list filters, quota and capacity failures, and preemption of Spot VMs.

A mixin of `FakeCompute`: it uses the server's lock, id counter and operations.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from .filters import FilterError, matches
from .model import LINK, ApiError, Image, Instance, Json, Metadata, Operation

NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
STOCKOUT = ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
            "The zone 'projects/{project}/zones/{zone}' does not have enough resources "
            "available to fulfill the request.  '(resource type:compute)'.")


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def quota_metric(accelerator: str, spot: bool) -> str:
    """nvidia-l4 -> NVIDIA_L4_GPUS; nvidia-tesla-t4 -> NVIDIA_T4_GPUS (PREEMPTIBLE_ for Spot)."""
    model = accelerator.removeprefix("nvidia-").removeprefix("tesla-").upper().replace("-", "_")
    return ("PREEMPTIBLE_" if spot else "") + f"NVIDIA_{model}_GPUS"


def _last(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


class VmLifecycle:
    # Provided by FakeCompute.
    lock: Any
    projects: dict[str, Metadata]
    instances: dict[tuple[str, str, str], Instance]
    operations: dict[str, Operation]
    operation_seconds: float
    boot_seconds: float
    _ids: Any
    _new_operation: Callable[..., Json]

    def _init_vms(self) -> None:
        self.images: dict[str, list[Image]] = {}
        # Regional quota limits by metric (e.g. {"NVIDIA_L4_GPUS": 0.0}); absent: unlimited.
        self.quota: dict[str, float] = {}
        # zone -> "all" (no capacity at all) or "spot" (none for Spot VMs): inserts fail.
        self.stockout: dict[str, str] = {}
        # Host keys every inserted instance publishes, `host_keys_delay` s after RUNNING.
        self.guest_host_keys: dict[str, str] | None = None
        self.host_keys_delay = 0.5
        self.provision_seconds = 0.1  # PROVISIONING before STAGING
        self.on_insert: Callable[[Instance], None] | None = None

    # --- set-up and inspection ---------------------------------------------------------

    def add_image(self, project: str, name: str, *, family: str | None = None,
                  disk_size_gb: int = 10, deprecated: bool = False) -> Image:
        """Images are listed oldest first; a family resolves to its newest usable one."""
        with self.lock:
            self.projects.setdefault(project, Metadata())
            image = Image(project, name, family, disk_size_gb, deprecated, next(self._ids))
            self.images.setdefault(project, []).append(image)
            return image

    def live(self, project: str, zone: str, name: str) -> Instance | None:
        """The instance, or None once a delete or a preemption has removed it."""
        with self.lock:
            instance = self.instances.get((project, zone, name))
            if instance is not None and instance.gone:
                del self.instances[(project, zone, name)]
                return None
            return instance

    def preempt(self, project: str, zone: str, name: str) -> Operation:
        """Compute Engine takes a Spot VM back: STOPPING, then TERMINATED (or deleted
        when its instanceTerminationAction is DELETE); a `compute.instances.preempted`
        operation records it."""
        with self.lock:
            instance = self.live(project, zone, name)
            assert instance is not None, f"no instance {name}"
            instance.move(("STOPPING", 0), ("TERMINATED", self.operation_seconds))
            if instance.scheduling.get("instanceTerminationAction") == "DELETE":
                instance.gone_at = time.monotonic() + self.operation_seconds
            body = self._new_operation(project, zone, "compute.instances.preempted",
                                       instance.link, 0.0, None)
            operation = self.operations[body["name"]]
            operation.target_id, operation.status_message = str(instance.id), \
                "Instance was preempted."
            operation.poll()
            return operation

    # --- routes ------------------------------------------------------------------------

    def _images(self, project: str, rest: list[str]) -> Json:
        images = self.images.get(project, [])
        if rest[:1] == ["family"] and len(rest) == 2:
            usable = [i for i in images if i.family == rest[1] and not i.deprecated]
            if not usable:
                raise ApiError(404, f"The resource 'projects/{project}/global/images/family/"
                               f"{rest[1]}' was not found", "notFound")
            return usable[-1].to_json()
        if len(rest) == 1:
            for image in images:
                if image.name == rest[0]:
                    return image.to_json()
            raise ApiError(404, f"The resource 'projects/{project}/global/images/{rest[0]}' "
                           "was not found", "notFound")
        raise ApiError(404, f"no such images path {rest}", "notFound")

    def _list(self, items: list[Json], query: dict[str, str], kind: str) -> Json:
        try:
            selected = [item for item in items if matches(query.get("filter", ""), item)]
        except FilterError as exc:
            raise ApiError(400, str(exc), "invalid") from None
        return {"kind": kind, "items": selected}

    def _zone_operations(self, project: str, zone: str, query: dict[str, str]) -> Json:
        items = [op.to_json() for op in self.operations.values()
                 if op.project == project and op.zone == zone]
        return self._list(items, query, "compute#operationList")

    def _list_instances(self, project: str, zone: str, query: dict[str, str]) -> Json:
        items = [i.to_json() for (p, z, n), i in list(self.instances.items())
                 if (p, z) == (project, zone) and self.live(p, z, n) is not None]
        return self._list(items, query, "compute#instanceList")

    def _insert(self, project: str, zone: str, body: Json, link: str) -> Json:
        name = str(body.get("name", ""))
        if not NAME.match(name):
            raise ApiError(400, f"Invalid value for field 'resource.name': '{name}'. Must be "
                           "a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", "invalid")
        if self.live(project, zone, name) is not None:
            raise ApiError(409, f"The resource 'projects/{project}/zones/{zone}/instances/"
                           f"{name}' already exists", "alreadyExists")
        machine_type = str(body.get("machineType", ""))
        if not re.search(rf"zones/{re.escape(zone)}/machineTypes/[a-z][-a-z0-9]*$",
                         machine_type):
            raise ApiError(400, f"Invalid value for field 'resource.machineType': "
                           f"'{machine_type}'.", "invalid")
        image = self._boot_image(body)
        scheduling = self._check_scheduling(body)
        self._check_labels(body.get("labels") or {})
        accelerators = list(body.get("guestAccelerators") or [])
        self._check_quota(project, zone, accelerators,
                          scheduling.get("provisioningModel") == "SPOT")
        instance = Instance(project, zone, name, id=next(self._ids), status="PROVISIONING",
                            metadata=Metadata({i["key"]: i.get("value", "") for i in
                                               (body.get("metadata") or {}).get("items", [])}),
                            labels=dict(body.get("labels") or {}), scheduling=scheduling,
                            machine_type=machine_type,
                            guest_accelerators=accelerators,
                            service_accounts=list(body.get("serviceAccounts") or []))
        instance.nat_ip = "203.0.113.10" if any(
            nic.get("accessConfigs") for nic in body.get("networkInterfaces") or []) else None
        boot = dict(body["disks"][0])
        params = boot.pop("initializeParams", {})
        boot.update(source=f"{LINK}{project}/zones/{zone}/disks/{params.get('diskName', name)}",
                    diskSizeGb=str(params.get("diskSizeGb") or image.disk_size_gb),
                    licenses=[], index=0)
        instance.disks = [boot]
        if self.guest_host_keys is not None:
            instance.host_keys = dict(self.guest_host_keys)
        self.instances[(project, zone, name)] = instance
        stockout = self.stockout.get(zone)
        failing = stockout == "all" or (
            stockout == "spot" and scheduling.get("provisioningModel") == "SPOT")

        def running() -> None:
            instance.move(("STAGING", 0), ("RUNNING", self.boot_seconds))
            instance.host_keys_at = time.monotonic() + self.boot_seconds + self.host_keys_delay

        def failed() -> None:
            instance.gone_at = time.monotonic()

        op_body = self._new_operation(project, zone, "insert", f"{link}/{name}",
                                      self.operation_seconds + self.provision_seconds,
                                      running)
        operation = self.operations[op_body["name"]]
        operation.target_id, operation.on_error = str(instance.id), failed
        if failing:
            code, message = STOCKOUT
            operation.error = [{"code": code,
                                "message": message.format(project=project, zone=zone)}]
        if self.on_insert is not None:
            self.on_insert(instance)
        return operation.to_json()

    def _delete(self, instance: Instance) -> Json:
        instance.move(("STOPPING", 0), ("TERMINATED", self.operation_seconds))
        instance.gone_at = time.monotonic() + self.operation_seconds
        return self._new_operation(instance.project, instance.zone, "delete", instance.link,
                                   self.operation_seconds, None)

    # --- validation, as the API answers ----------------------------------------------------

    def _boot_image(self, body: Json) -> Image:
        disks = body.get("disks") or []
        boot = [d for d in disks if d.get("boot")]
        if len(boot) != 1 or disks[0] is not boot[0]:
            raise ApiError(400, "Invalid value for field 'resource.disks': exactly one boot "
                           "disk, first, is required.", "invalid")
        params = boot[0].get("initializeParams") or {}
        source = str(params.get("sourceImage", ""))
        found = re.search(r"projects/([^/]+)/global/images/(family/)?([^/]+)$", source)
        if found is None:
            raise ApiError(400, f"Invalid value for field 'resource.disks[0].initializeParams"
                           f".sourceImage': '{source}'.", "invalid")
        project, family, name = found.groups()
        image = self._images(project, ["family", name] if family else [name])
        size = int(params.get("diskSizeGb") or image["diskSizeGb"])
        if size < int(image["diskSizeGb"]):
            raise ApiError(400, f"Invalid value for field 'resource.disks[0].initializeParams"
                           f".diskSizeGb': '{size}'. Requested disk size cannot be smaller "
                           f"than the image size ({image['diskSizeGb']} GB)", "invalid")
        return next(i for i in self.images[project] if i.name == image["name"])

    def _check_scheduling(self, body: Json) -> Json:
        scheduling = dict(body.get("scheduling") or {})
        spot = scheduling.get("provisioningModel") == "SPOT"
        migrates = scheduling.get("onHostMaintenance", "MIGRATE") == "MIGRATE"
        if body.get("guestAccelerators") and migrates:
            raise ApiError(400, "Instances with guest accelerators do not support live "
                           "migration.", "invalid")
        if spot and (migrates or scheduling.get("automaticRestart", True)):
            raise ApiError(400, "Invalid value for field 'resource.scheduling': Spot VMs "
                           "must have onHostMaintenance TERMINATE and automaticRestart false.",
                           "invalid")
        if "maxRunDuration" in scheduling:
            seconds = int(scheduling["maxRunDuration"].get("seconds", 0))
            if not 30 <= seconds <= 120 * 86400:
                raise ApiError(400, "Invalid value for field 'resource.scheduling."
                               f"maxRunDuration.seconds': '{seconds}'.", "invalid")
            if scheduling.get("instanceTerminationAction") not in ("STOP", "DELETE"):
                raise ApiError(400, "Invalid value for field 'resource.scheduling': "
                               "maxRunDuration needs instanceTerminationAction STOP or "
                               "DELETE.", "invalid")
        return scheduling

    def _check_labels(self, labels: dict[str, str]) -> None:
        for key, value in labels.items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(str(value)):
                raise ApiError(400, f"Invalid value for field 'resource.labels': "
                               f"'{key}={value}'.", "invalid")

    def _check_quota(self, project: str, zone: str, accelerators: list[Json],
                     spot: bool) -> None:
        region = region_of(zone)
        for accelerator in accelerators:
            kind = _last(str(accelerator.get("acceleratorType", "")))
            metric = quota_metric(kind, spot)
            if metric not in self.quota:
                continue
            used = sum(int(a.get("acceleratorCount", 0))
                       for (p, z, n), i in list(self.instances.items())
                       if p == project and region_of(z) == region
                       and self.live(p, z, n) is not None
                       for a in i.guest_accelerators
                       if quota_metric(_last(str(a.get("acceleratorType", ""))),
                                       i.scheduling.get("provisioningModel") == "SPOT")
                       == metric)
            if used + int(accelerator.get("acceleratorCount", 0)) > self.quota[metric]:
                raise ApiError(403, f"Quota '{metric}' exceeded.  Limit: "
                               f"{self.quota[metric]:.1f} in region {region}.",
                               "quotaExceeded")
