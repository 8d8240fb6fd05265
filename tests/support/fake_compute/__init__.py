"""A fake Compute Engine (and OS Login) REST server on 127.0.0.1, for tests.

The real `google-cloud-compute` and `google-cloud-os-login` clients talk to it
over HTTP (`client_options={"api_endpoint": server.url}`), so the code under
test runs exactly as it would against Google. It holds projects, images and
instances in memory and implements what `providers.gce` calls:

- instances get / list (filter) / insert / delete / start / stop / resume /
  setMetadata / getGuestAttributes
- images get / getFromFamily
- projects get / setCommonInstanceMetadata
- zoneOperations get / wait / list (filter), globalOperations get / wait
- OS Login users.importSshPublicKey

State changes go through operations that finish after a configurable delay;
an inserted instance goes PROVISIONING, STAGING, RUNNING and publishes its host
keys a moment later, as a booting guest does. Insert is validated as the API
validates it (names, machine type, boot image, accelerators with scheduling,
Spot, maxRunDuration, labels); `quota` limits GPUs per region (403
quotaExceeded), `stockout` makes a zone run out of capacity (the operation
fails with ZONE_RESOURCE_POOL_EXHAUSTED...), `preempt()` takes a Spot VM back
(and records a compute.instances.preempted operation). Metadata writes check
the fingerprint (412 on mismatch); `inject()` makes chosen calls fail with a
realistic error body; `calls` logs every request. It does not depend on
pytest: start it with `with FakeCompute() as fake:` or `start()` / `close()`.

  model    what it holds (metadata, instances, images, operations, error bodies)
  server   HTTP, routing, projects, power actions, metadata, operations, OS Login
  vms      insert, delete, images, filters, quota, capacity, preemption
  filters  the list `filter` expressions clients send
"""

from __future__ import annotations

from .model import ApiError, Call, Image, Instance, Metadata, Operation
from .server import FakeCompute
from .vms import quota_metric

__all__ = ["ApiError", "Call", "FakeCompute", "Image", "Instance", "Metadata", "Operation",
           "quota_metric"]
