"""Google Compute Engine VMs as runtimes, as `gcloud compute ssh` reaches them.

  provider    create or start the VM, push the key, host keys, address; delete or stop it
  create      the VM a profile describes, as gcloud creates it (labels, image, scheduling)
  access      the key into instance or project metadata, or OS Login
  reach       host keys from guest attributes, the address (external, internal, IAP)
  gpu         nvidia-smi: the GPU driver works
  preemption  was a Spot VM taken back (the zone's operations say so)
  queries     status, preemption, VMs left behind: questions that need no SSH
  api         the Compute and OS Login clients, credentials, errors (the only importer of Google)
  keys        gcloud's conventions for user names, key pairs, metadata and host keys
"""

from __future__ import annotations

from .provider import GceProvider
from .queries import leftovers, live_status, preemption

__all__ = ["GceProvider", "leftovers", "live_status", "preemption"]
