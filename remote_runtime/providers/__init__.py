"""Providers turn a profile into an SSH endpoint.

A provider is a context manager: `prepare()` does whatever the target needs
before SSH (start a VM, push a key, read its host keys) and returns an
`Endpoint`; `close()` undoes what the profile asks to undo on exit (stop the
VM). Only `providers.gce.api` imports Google's libraries.

  ssh   a plain SSH host: the profile's `ssh` section is the endpoint
  gce   a Compute Engine VM (`gce/provider`), its API (`gce/api`), keys (`gce/keys`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..options import Progress
from ..ssh.endpoint import Endpoint

if TYPE_CHECKING:
    from ..profiles import Profile

__all__ = ["Endpoint", "Progress", "Provider", "for_profile"]


class Provider(Protocol):
    def prepare(self, progress: Progress) -> Endpoint: ...

    def close(self, progress: Progress) -> None: ...


def for_profile(profile: Profile) -> Provider:
    """The provider for a profile's kind (GCE imports Google's libraries lazily)."""
    if profile.gce is not None:
        from .gce import GceProvider

        return GceProvider(profile)
    from .ssh import SSHProvider

    return SSHProvider(profile)
