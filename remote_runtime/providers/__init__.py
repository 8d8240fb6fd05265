"""Providers turn a profile into an SSH endpoint.

A provider is a context manager: `prepare()` does whatever the target needs
before SSH (create or start a VM, push a key, read its host keys) and returns
an `Endpoint`; `close()` undoes what the profile asks to undo on exit (stop or
delete the VM). The runtime also tells it when SSH is connected
(`after_connect`: e.g. wait for the GPU driver) and when the runtime is up
(`runtime_up`), may `abort()` a prepare from another thread, and asks it why a
connection was lost (`preempted`). Only `providers.gce.api` imports Google's
libraries.

  ssh   a plain SSH host: the profile's `ssh` section is the endpoint
  gce   a Compute Engine VM (`gce/provider`), its API (`gce/api`), keys (`gce/keys`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..options import Progress
from ..ssh.endpoint import Endpoint

if TYPE_CHECKING:
    from ..profiles import Profile
    from ..ssh import Session

__all__ = ["BaseProvider", "Endpoint", "Progress", "Provider", "for_profile"]


class Provider(Protocol):
    def prepare(self, progress: Progress) -> Endpoint: ...

    def after_connect(self, session: Session, progress: Progress) -> list[str]: ...

    def runtime_up(self) -> None: ...

    def abort(self) -> None: ...

    def preempted(self) -> str | None: ...

    def close(self, progress: Progress) -> None: ...


class BaseProvider:
    """What a provider does when it has nothing to add to a step."""

    def after_connect(self, session: Session, progress: Progress) -> list[str]:
        """Called once SSH is connected; returns notes for the user."""
        return []

    def runtime_up(self) -> None:
        """Called when the runtime passed its health check."""

    def abort(self) -> None:
        """From another thread: make a running prepare() give up soon."""

    def preempted(self) -> str | None:
        """When the machine was taken back by its cloud (a Spot VM), or None."""
        return None


def for_profile(profile: Profile) -> Provider:
    """The provider for a profile's kind (GCE imports Google's libraries lazily)."""
    if profile.gce is not None:
        from .gce import GceProvider

        return GceProvider(profile)
    from .ssh import SSHProvider

    return SSHProvider(profile)
