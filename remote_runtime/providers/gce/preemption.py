"""Was a Spot VM taken back by Compute Engine? The zone's operations say so.

Compute Engine records a preemption as a `compute.instances.preempted` operation
on the instance (`gcloud compute operations list --filter
operationType=compute.instances.preempted`); the instance itself only shows
STOPPING/TERMINATED, or is gone when its termination action is DELETE.
"""

from __future__ import annotations

from .api import ComputeApi, compute_module

PREEMPTED = "compute.instances.preempted"


def preempted_at(api: ComputeApi, zone: str, name: str, instance_id: str = "") -> str | None:
    """When the instance `name` (with `instance_id`, if known) was last preempted, or None."""
    clauses = [f'operationType = "{PREEMPTED}"']
    if instance_id:
        clauses.append(f'targetId = "{instance_id}"')
    target = f"instance '{name}' in project '{api.project}', zone '{zone}'"
    request = compute_module().ListZoneOperationsRequest(
        project=api.project, zone=zone, filter=" AND ".join(f"({c})" for c in clauses))
    with api.calling("reading the zone's operations", target):
        operations = list(api.zone_operations.list(request=request,
                                                   timeout=api.request_timeout))
    times = [str(op.insert_time) for op in operations
             if str(op.target_link).rstrip("/").endswith(f"/instances/{name}")]
    return max(times) if times else None
