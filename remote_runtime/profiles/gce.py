"""GCE VMs made by the tool: the `gce.create` section, `{run}` instance names, and the
checks that span several `gce` keys (delete_on_exit, idle_stop_minutes).

A profile whose instance name holds `{run}` is a template: every `up`, `run` or `exec`
of it creates its own VM, named with a fresh suffix, and deletes it at its end. The
runtime it makes is named `PROFILE-SUFFIX` (the suffix is the same), so `list`,
`status` and `down` can name each one.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from .checkers import Checker, Convert, Section, _bool, _int_range, _mapping, _number_at_least, _str

RUN_PLACEHOLDER = "{run}"
RUN_SUFFIX_RE = re.compile(r"^[a-z][a-z0-9]{5}$")
# Compute Engine resource names (RFC 1035): instances, machine types, accelerator types.
NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
# Labels the tool sets on the VMs it creates (see providers.gce.create).
RESERVED_LABEL = re.compile(r"^(created-by|remote-runtime(-.*)?)$")
MAX_LABELS = 64
MAX_RUN_MINUTES = 120 * 24 * 60  # GCE's limit for maxRunDuration: 120 days
MIN_IDLE_MINUTES = 0.1


def new_run_suffix() -> str:
    """Six characters, a letter first: valid at the end or the start of an instance name."""
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(alphabet) for _ in range(5))


@dataclass(frozen=True)
class Accelerator:
    type: str
    count: int = 1


@dataclass(frozen=True)
class Image:
    project: str
    family: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class CreateSettings:
    """How to create the VM when it does not exist (as `gcloud compute instances create`)."""

    machine_type: str
    image: Image
    accelerator: Accelerator | None = None
    boot_disk_gb: int | None = None  # None: the image's size
    boot_disk_type: str = "pd-balanced"
    spot: bool = False
    max_run_minutes: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    network: str = "default"
    subnetwork: str | None = None
    external_ip: bool = True
    service_account: str = "default"  # an email, "default" or "none"


# --- checkers -----------------------------------------------------------------------


def _gce_name(what: str) -> Convert:
    def check(value: Any) -> str:
        text = _str(value)
        if not NAME_RE.match(text):
            raise ValueError(f"must be a Compute Engine {what} name (lowercase letters, "
                             f"digits and '-', starting with a letter), not {text!r}")
        return text

    return check


def _label_key(value: Any) -> str:
    text = _str(value)
    if not LABEL_KEY_RE.match(text):
        raise ValueError(f"label key {text!r} must start with a lowercase letter and use "
                         "lowercase letters, digits, '_' and '-' (at most 63)")
    if RESERVED_LABEL.match(text):
        raise ValueError(f"label key {text!r} is set by remote-runtime itself")
    return text


def _label_value(value: str) -> str:
    if not LABEL_VALUE_RE.match(value):
        raise ValueError("label values use lowercase letters, digits, '_' and '-' "
                         "(at most 63)")
    return value


def _labels(value: Any) -> dict[str, str]:
    labels = _mapping(_label_key, _label_value)(value)
    if len(labels) > MAX_LABELS - 4:  # the tool adds its own
        raise ValueError(f"at most {MAX_LABELS - 4} labels")
    return labels


def _metadata_value(value: str) -> str:
    if len(value.encode()) > 256 * 1024:
        raise ValueError("a metadata value holds at most 256 KB")
    return value


def _service_account(value: Any) -> str:
    text = _str(value)
    if text not in ("default", "none") and "@" not in text:
        raise ValueError(f"must be a service account email, 'default' or 'none', not {text!r}")
    return text


def _image(image: dict[str, Any]) -> Image:
    if ("family" in image) == ("name" in image):
        raise ValueError("give exactly one of 'family' (the current image of a family) "
                         "or 'name' (one image)")
    return Image(**image)


ACCELERATOR_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "type": (_gce_name("accelerator type"), True),
    "count": (_int_range(1, 16), False),
}
IMAGE_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "family": (_gce_name("image family"), False),
    "name": (_gce_name("image"), False),
    "project": (_str, True),
}
CREATE_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "machine_type": (_gce_name("machine type"), True),
    "image": (Section(IMAGE_SCHEMA, _image), True),
    "accelerator": (Section(ACCELERATOR_SCHEMA, lambda values: Accelerator(**values)), False),
    "boot_disk_gb": (_int_range(10, 65536, "of GB"), False),
    "boot_disk_type": (_gce_name("disk type"), False),
    "spot": (_bool, False),
    "max_run_minutes": (_int_range(1, MAX_RUN_MINUTES, "of minutes"), False),
    "labels": (_labels, False),
    "metadata": (_mapping(_str, _metadata_value), False),
    "network": (_str, False),
    "subnetwork": (_str, False),
    "external_ip": (_bool, False),
    "service_account": (_service_account, False),
}
CREATE_SECTION = Section(CREATE_SCHEMA, lambda values: CreateSettings(**values))
IDLE_MINUTES = _number_at_least(MIN_IDLE_MINUTES, "minutes")


def cross_check(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems between `gce` keys, as (key, reason); `values` are the checked keys."""
    problems = []
    instance = str(values.get("instance", ""))
    create = values.get("create")
    if RUN_PLACEHOLDER in instance:
        if instance.count(RUN_PLACEHOLDER) > 1:
            problems.append(("instance", f"may hold {RUN_PLACEHOLDER} once"))
        elif not NAME_RE.match(instance.replace(RUN_PLACEHOLDER, "a00000")):
            problems.append(("instance", f"with {RUN_PLACEHOLDER} replaced by a 6-character "
                             "suffix, must be a Compute Engine instance name (lowercase "
                             "letters, digits and '-', starting with a letter, at most 63)"))
        if create is None:
            problems.append(("instance", f"an instance named with {RUN_PLACEHOLDER} is created per "
                             "run: the profile needs a 'create' section"))
        if values.get("delete_on_exit") is False:
            problems.append(("delete_on_exit", f"an instance named with {RUN_PLACEHOLDER} is "
                             "created per run and must be deleted at its end"))
    elif create is not None and not NAME_RE.match(instance):
        problems.append(("instance", "a VM to create needs a Compute Engine instance name "
                         "(lowercase letters, digits and '-', starting with a letter)"))
    if values.get("delete_on_exit") and values.get("stop_on_exit"):
        problems.append(("stop_on_exit", "cannot be set together with delete_on_exit"))
    return problems
