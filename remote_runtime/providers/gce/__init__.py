"""Google Compute Engine VMs as runtimes, as `gcloud compute ssh` reaches them.

  provider  start the VM, push the key, read its host keys, pick the address
  api       the Compute and OS Login clients, credentials, errors (the only importer of Google)
  keys      gcloud's conventions for user names, key pairs, metadata and host keys
"""

from __future__ import annotations

from .provider import GceProvider, live_status

__all__ = ["GceProvider", "live_status"]
