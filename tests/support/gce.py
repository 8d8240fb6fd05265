"""A GCE VM played by the sandbox: the fake Compute API holds the instances, the sandbox's
sshd is every instance's SSH server, and small stand-ins play what a Deep Learning VM
has (its guest agent, nvidia-smi, the power-off).

- `GuestAgent` copies the users' keys from instance (and project) metadata into sshd's
  authorized_keys a moment later, as a VM's guest agent does.
- `VmHost` writes `nvidia-smi` (fails until the "driver" is installed, which its first
  call does, then lists one NVIDIA L4) and a power-off command that only records that it
  ran; the VM sandbox puts both on its sessions' PATH and in `REMOTE_RUNTIME_POWEROFF`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import Sandbox
from support.fake_compute import FakeCompute, Instance
from support.remote import Teardown, write_profiles

PROJECT, ZONE = "proj-1", "us-central1-a"
DLVM_PROJECT, DLVM_FAMILY = "deeplearning-platform-release", "common-cu124-ubuntu-2204"
SSHD_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"  # what sshd gives sessions here
GPU_LINE = "NVIDIA L4, 550.90.07, 23034 MiB"
GUEST_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIEd1ZXN0QXR0cmlidXRlSG9zdEtleUZvclRlc3RpbmdYWA=="
CURRENT_IMAGE = "common-cu124-v20240922-ubuntu-2204-py310"  # the family's, in dlvm_images

NVIDIA_SMI = """#!/bin/sh
# nvidia-smi of a Deep Learning VM whose driver installs at first boot: the first call
# fails as nvidia-smi does without a driver, and "finishes" the install.
echo "$*" >> {dir}/nvidia-smi.calls
if [ ! -e {dir}/driver-installed ]; then
  touch {dir}/driver-installed
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
  exit 9
fi
echo "{line}"
"""
POWEROFF = """#!/bin/sh
# Stands in for `shutdown -h now`: records that the VM would power off now.
date +%s >> {dir}/poweroff.log
"""


class VmHost:
    """The stand-ins' directory (on the filesystem the sandbox shares with us)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name, text in (("nvidia-smi", NVIDIA_SMI), ("poweroff", POWEROFF)):
            path = self.bin / name
            path.write_text(text.format(dir=root, line=GPU_LINE))
            path.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        """What the VM sandbox's sessions get (sshd SetEnv)."""
        return {"PATH": f"{self.bin}:{SSHD_PATH}",
                "REMOTE_RUNTIME_POWEROFF": str(self.bin / "poweroff")}

    def remote_cache(self, shared: Path) -> Path:
        """A remote cache dir of its own whose managed envs are the shared ones (building
        one takes minutes; its runs, idle state and logs stay apart)."""
        cache = self.root / "remote-cache"
        base = cache / "remote-runtime"
        base.mkdir(parents=True, mode=0o700, exist_ok=True)
        envs = shared / "remote-runtime" / "envs"
        envs.mkdir(parents=True, mode=0o700, exist_ok=True)
        if not (base / "envs").exists():
            (base / "envs").symlink_to(envs, target_is_directory=True)
        return cache

    def reset(self) -> None:
        for name in ("driver-installed", "nvidia-smi.calls", "poweroff.log"):
            (self.root / name).unlink(missing_ok=True)

    @property
    def gpu_calls(self) -> list[str]:
        path = self.root / "nvidia-smi.calls"
        return path.read_text().splitlines() if path.exists() else []

    @property
    def powered_off(self) -> list[str]:
        path = self.root / "poweroff.log"
        return path.read_text().splitlines() if path.exists() else []


class GuestAgent:
    """Copies the sandbox user's metadata ssh-keys of every instance into the sandbox sshd's
    authorized_keys after `delay`, as a VM's guest agent does."""

    def __init__(self, fake: FakeCompute, box: Sandbox, delay: float = 1.0):
        assert box.sshd is not None
        self.fake, self.delay = fake, delay
        self.user = box.sshd.user
        self.path = box.sshd.authorized_keys
        self.base = box.sshd.client_key.with_suffix(".pub").read_text()
        self.applied: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _keys(self) -> list[str]:
        found: list[str] = []
        with self.fake.lock:
            for vm in list(self.fake.instances.values()):
                items = vm.metadata.items
                value = items.get("ssh-keys", "")
                if items.get("block-project-ssh-keys", "").lower() != "true":
                    value += "\n" + self.fake.projects[vm.project].items.get("ssh-keys", "")
                found += [line.split(":", 1)[1] for line in value.splitlines()
                          if line.startswith(f"{self.user}:")]
        return sorted(set(found))

    def _run(self) -> None:
        seen_at: float | None = None
        while not self.stop.wait(0.05):
            keys = self._keys()
            if keys == self.applied:
                seen_at = None
                continue
            seen_at = seen_at or time.monotonic()
            if time.monotonic() - seen_at >= self.delay:
                self.path.write_text(self.base + "".join(f"{k}\n" for k in keys))
                self.applied = keys

    def __enter__(self) -> GuestAgent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.path.write_text(self.base)


def host_key(box: Sandbox) -> dict[str, str]:
    assert box.sshd is not None
    kind, blob = box.sshd.host_key_line.split()[:2]
    return {kind: blob}


def dlvm_images(fake: FakeCompute) -> str:
    """A DLVM image family with an older image, the current one, and a deprecated newer
    one (a family resolves to its newest image that is not deprecated); the current name."""
    fake.add_image(DLVM_PROJECT, "common-cu124-v20240901-ubuntu-2204-py310",
                   family=DLVM_FAMILY, disk_size_gb=50)
    fake.add_image(DLVM_PROJECT, CURRENT_IMAGE, family=DLVM_FAMILY, disk_size_gb=50)
    fake.add_image(DLVM_PROJECT, "common-cu124-v20241001-ubuntu-2204-py310",
                   family=DLVM_FAMILY, disk_size_gb=50, deprecated=True)
    return CURRENT_IMAGE


def gce_body(box: Sandbox, *, instance: str, jupyter: dict[str, Any] | None = None,
             **gce: Any) -> dict[str, Any]:
    """A profile body whose GCE "VM" is reached at the sandbox's sshd."""
    assert box.sshd is not None and box.sshd.proxy_command
    body = box.profile()
    settings = {"project": PROJECT, "zone": ZONE, "instance": instance,
                "user": box.sshd.user, "proxy_command": box.sshd.proxy_command, **gce}
    jupyter_settings = {k: v for k, v in body["jupyter"].items() if k != "port"}
    return {"gce": settings, "jupyter": {**jupyter_settings, **(jupyter or {})}}


def gpu_create(**extra: Any) -> dict[str, Any]:
    """The issue's example `create` section (a Spot L4 VM from a DLVM family)."""
    return {"machine_type": "g2-standard-8",
            "accelerator": {"type": "nvidia-l4", "count": 1},
            "image": {"family": DLVM_FAMILY, "project": DLVM_PROJECT},
            "boot_disk_gb": 100, "spot": True, "max_run_minutes": 120,
            "labels": {"team": "ml"}, **extra}


def existing_vm(fake: FakeCompute, box: Sandbox, name: str, **kwargs: Any) -> Instance:
    return fake.add_instance(PROJECT, ZONE, name, nat_ip=None, metadata={
        "enable-guest-attributes": "TRUE", "block-project-ssh-keys": "TRUE"},
        host_keys=host_key(box), **kwargs)


@dataclass
class Dlvm:
    """One test's world: the fake Compute API, the sandbox that plays its VMs (its
    stand-ins reset), and the teardown that runs `down --all` for registered profiles."""

    fake: FakeCompute
    box: Sandbox
    host: VmHost
    guard: Teardown

    def profiles(self, path: Path, **bodies: dict[str, Any]) -> Path:
        return self.guard.add(write_profiles(path, bodies))
