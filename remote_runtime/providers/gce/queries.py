"""Questions about a profile's VM that need no SSH: its status, whether a Spot VM was
preempted, which VMs this machine created for it still exist."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ...profiles import Profile
from . import create
from .api import api_errors, compute_module, connect, settings_of, target_of
from .preemption import preempted_at

RUNNING = "RUNNING"


def live_status(profile: Profile, environ: Mapping[str, str] | None = None) -> str:
    """The instance's status from the API (e.g. "RUNNING"), for `list --refresh`."""
    settings = settings_of(profile)
    api = connect(profile, os.environ if environ is None else environ)
    target = target_of(api.project, settings)
    with api.calling("reading the instance", target):
        instance = api.instances.get(project=api.project, zone=settings.zone,
                                     instance=settings.instance, timeout=api.request_timeout)
    return str(instance.status)


def preemption(profile: Profile, instance_id: str = "",
               environ: Mapping[str, str] | None = None) -> str | None:
    """When the profile's (Spot) VM was preempted, if it was; None while it runs."""
    settings = settings_of(profile)
    api = connect(profile, os.environ if environ is None else environ)
    gexc = api_errors()
    try:
        with api.calling("reading the instance", target_of(api.project, settings),
                         passthrough=lambda e: isinstance(e, gexc.NotFound)):
            instance = api.instances.get(project=api.project, zone=settings.zone,
                                         instance=settings.instance,
                                         timeout=api.request_timeout)
        if str(instance.status) == RUNNING and (
                not instance_id or str(instance.id) == instance_id):
            return None
    except gexc.NotFound:
        pass  # a Spot VM whose termination action is DELETE is gone
    return preempted_at(api, settings.zone, settings.instance, instance_id)


def leftovers(profile: Profile, environ: Mapping[str, str] | None = None) -> list[str]:
    """Instances this machine created for `profile` (by their labels) that still exist."""
    settings = settings_of(profile)
    api = connect(profile, os.environ if environ is None else environ)
    wanted = {create.CREATED_BY[0]: create.CREATED_BY[1],
              create.HOST_LABEL: create.machine_label(),
              create.PROFILE_LABEL: create.label_value(profile.profile_name)}
    expression = " AND ".join(f'(labels.{key} = "{value}")' for key, value in wanted.items())
    request = compute_module().ListInstancesRequest(project=api.project, zone=settings.zone,
                                                    filter=expression)
    with api.calling("listing the instances it created", f"zone '{settings.zone}'"):
        found = api.instances.list(request=request, timeout=api.request_timeout)
    return sorted(str(i.name) for i in found
                  if all(dict(i.labels).get(k) == v for k, v in wanted.items()))
