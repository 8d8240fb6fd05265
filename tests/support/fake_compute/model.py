"""What the fake Compute API holds: projects' metadata, instances, images, operations,
and the error bodies it answers with (shaped as Google's)."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]
BASE = "/compute/v1/projects/"
LINK = "https://www.googleapis.com" + BASE


def new_fingerprint() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()


def rfc3339(at: float | None = None) -> str:
    """A timestamp as the API writes them (creationTimestamp, insertTime)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="milliseconds")


@dataclass
class Metadata:
    """Ordered metadata items plus the fingerprint `setMetadata` must quote."""

    items: dict[str, str] = field(default_factory=dict)
    fingerprint: str = field(default_factory=new_fingerprint)

    def to_json(self) -> Json:
        body: Json = {"kind": "compute#metadata", "fingerprint": self.fingerprint}
        if self.items:
            body["items"] = [{"key": k, "value": v} for k, v in self.items.items()]
        return body

    def replace(self, body: Json) -> None:
        self.items = {item["key"]: item.get("value", "") for item in body.get("items", [])}
        self.fingerprint = new_fingerprint()


@dataclass
class Instance:
    project: str
    zone: str
    name: str
    id: int
    status: str = "RUNNING"
    nat_ip: str | None = "203.0.113.10"
    network_ip: str = "10.128.0.2"
    metadata: Metadata = field(default_factory=Metadata)
    # Guest attributes under hostkeys/: key type -> base64 (None: not published).
    host_keys: dict[str, str] | None = None
    # ...published from this monotonic time on (a booting guest writes them late).
    host_keys_at: float = 0.0
    # A status the instance moves to at a monotonic time (boot, shutdown), then the next.
    pending: tuple[str, float] | None = None
    later: list[tuple[str, float]] = field(default_factory=list)
    # Set by insert (as the API returns them); empty for instances added by a test.
    labels: dict[str, str] = field(default_factory=dict)
    scheduling: Json = field(default_factory=dict)
    machine_type: str = ""
    disks: list[Json] = field(default_factory=list)
    guest_accelerators: list[Json] = field(default_factory=list)
    service_accounts: list[Json] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    # When a delete or a preemption removes it (monotonic), and whether it is gone.
    gone_at: float | None = None

    def current_status(self) -> str:
        while self.pending is not None and time.monotonic() >= self.pending[1]:
            self.status = self.pending[0]
            self.pending = self.later.pop(0) if self.later else None
        return self.status

    def move(self, *steps: tuple[str, float]) -> None:
        """Go through `steps` (status, seconds from now), one after the other."""
        now = time.monotonic()
        timed = [(status, now + delay) for status, delay in steps]
        self.status, self.pending, self.later = timed[0][0], None, timed[1:]
        if self.later:
            self.pending = self.later.pop(0)

    @property
    def gone(self) -> bool:
        return self.gone_at is not None and time.monotonic() >= self.gone_at

    @property
    def link(self) -> str:
        return f"{LINK}{self.project}/zones/{self.zone}/instances/{self.name}"

    def to_json(self) -> Json:
        nic: Json = {"name": "nic0", "networkIP": self.network_ip, "accessConfigs": []}
        if self.nat_ip:
            nic["accessConfigs"] = [
                {"name": "External NAT", "type": "ONE_TO_ONE_NAT", "natIP": self.nat_ip}
            ]
        body: Json = {
            "kind": "compute#instance",
            "id": str(self.id),
            "name": self.name,
            "zone": f"{LINK}{self.project}/zones/{self.zone}",
            "selfLink": self.link,
            "status": self.current_status(),
            "creationTimestamp": rfc3339(self.created),
            "networkInterfaces": [nic],
            "metadata": self.metadata.to_json(),
        }
        optional = {"labels": self.labels, "scheduling": self.scheduling,
                    "machineType": self.machine_type, "disks": self.disks,
                    "guestAccelerators": self.guest_accelerators,
                    "serviceAccounts": self.service_accounts}
        body.update({key: value for key, value in optional.items() if value})
        return body


@dataclass
class Image:
    project: str
    name: str
    family: str | None
    disk_size_gb: int
    deprecated: bool
    id: int

    @property
    def link(self) -> str:
        return f"{LINK}{self.project}/global/images/{self.name}"

    def to_json(self) -> Json:
        body: Json = {"kind": "compute#image", "id": str(self.id), "name": self.name,
                      "selfLink": self.link, "diskSizeGb": str(self.disk_size_gb),
                      "status": "READY"}
        if self.family:
            body["family"] = self.family
        if self.deprecated:
            body["deprecated"] = {"state": "DEPRECATED"}
        return body


@dataclass
class Operation:
    project: str
    zone: str | None  # None: a global operation
    name: str
    kind: str
    target: str
    done_at: float
    on_done: Callable[[], None] | None = None
    error: list[Json] | None = None
    done: bool = False
    on_error: Callable[[], None] | None = None
    target_id: str = ""
    inserted: float = field(default_factory=time.time)
    status_message: str = ""

    def poll(self) -> None:
        if not self.done and time.monotonic() >= self.done_at:
            self.done = True
            if self.error:
                if self.on_error is not None:
                    self.on_error()
            elif self.on_done is not None:
                self.on_done()

    def to_json(self) -> Json:
        self.poll()
        body: Json = {
            "kind": "compute#operation",
            "id": str(abs(hash(self.name)) % 10**18),
            "name": self.name,
            "operationType": self.kind,
            "targetLink": self.target,
            "status": "DONE" if self.done else "RUNNING",
            "progress": 100 if self.done else 50,
            "insertTime": rfc3339(self.inserted),
        }
        if self.target_id:
            body["targetId"] = self.target_id
        if self.status_message:
            body["statusMessage"] = self.status_message
        if self.zone is not None:
            body["zone"] = f"{LINK}{self.project}/zones/{self.zone}"
        if self.done and self.error:
            body["error"] = {"errors": self.error}
        return body


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Json | None

    @property
    def action(self) -> str:
        """The last path segment: 'start', 'setMetadata', an instance name, ..."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Fault:
    status: int
    method: str
    pattern: Any  # re.Pattern[str]
    message: str
    reason: str
    permission: str | None
    times: int | None  # None: every time


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str, permission: str | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.permission = (
            status, message, reason, permission)

    def body(self) -> Json:
        error: Json = {
            "code": self.status,
            "message": self.message,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }
        if self.permission:
            error["details"] = [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "compute.googleapis.com",
                "metadata": {"permission": self.permission},
            }]
        return {"error": error}
