"""The VM's GPUs as `nvidia-smi` sees them: the proof that the driver works.

A Deep Learning VM created with `install-nvidia-driver=True` installs the driver
during its first boot, minutes after SSH already answers; `wait` polls until
nvidia-smi lists the GPUs (or the deadline passes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import RemoteSetupError, SSHError
from ...options import Progress
from ...ssh import Session

QUERY = "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader"
QUERY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Gpu:
    name: str
    driver: str
    memory: str

    def __str__(self) -> str:
        return f"{self.name} (driver {self.driver}, {self.memory})"


class GpuError(RemoteSetupError):
    """nvidia-smi does not work (yet)."""


def query(session: Session) -> list[Gpu]:
    """The GPUs nvidia-smi lists; raises GpuError with its complaint when it fails."""
    result = session.run(QUERY, timeout=QUERY_TIMEOUT)
    if result.status != 0:
        text = (result.stderr.strip() or result.stdout.strip() or
                f"exit status {result.status}").splitlines()
        reason = "not installed" if result.status == 127 else text[-1][:200]
        raise GpuError(f"nvidia-smi failed: {reason}")
    gpus = []
    for line in result.stdout.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3:
            gpus.append(Gpu(*parts))
    if not gpus:
        raise GpuError("nvidia-smi lists no GPU")
    return gpus


def describe(gpus: list[Gpu]) -> str:
    return "; ".join(f"{index}: {gpu}" for index, gpu in enumerate(gpus))


def wait(session: Session, *, expected: int, deadline: float, progress: Progress,
         cancelled: Callable[[], None], interval: float = 5.0) -> list[Gpu]:
    """Poll nvidia-smi until it lists `expected` GPUs; the last failure at the deadline."""
    last = ""
    while True:
        cancelled()
        try:
            gpus = query(session)
            if len(gpus) >= expected:
                return gpus
            reason = f"nvidia-smi lists {len(gpus)} of {expected} GPU(s)"
        except GpuError as exc:
            reason = exc.message
        except SSHError as exc:
            reason = f"running nvidia-smi: {exc.message}"
        if reason != last:
            progress(f"waiting for the NVIDIA driver ({reason})")
            last = reason
        if time.monotonic() >= deadline:
            raise GpuError(f"the GPU is not usable: {reason}",
                           hint="a Deep Learning VM installs its driver at first boot "
                           "(install-nvidia-driver metadata); check the image and the "
                           "serial console (gcloud compute instances "
                           "get-serial-port-output)")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
