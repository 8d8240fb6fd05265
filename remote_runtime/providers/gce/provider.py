"""Google Compute Engine profiles: create or start the VM, push the key, read its host
keys, pick an address; delete or stop it on exit.

`GceProvider.prepare()` does what `gcloud compute ssh` does before it runs ssh
(DESIGN.md fact 7), creating the VM first when the profile has a `create`
section and the instance does not exist, and returns an `Endpoint`.
`after_connect()` waits for the GPU driver of a VM with accelerators. `close()`
deletes a VM this run created when the runtime never came up (or on exit with
`delete_on_exit`), or stops it with `stop_on_exit`. Nothing here prints: progress
goes through the callback, failures leave as `CloudError`. Google's libraries
are imported lazily, and only by `api`, so other profiles work without them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ... import paths
from ...errors import CloudError
from ...options import Progress
from ...profiles import GCESettings, Profile
from ...ssh import Session
from ...ssh.endpoint import Endpoint
from .. import BaseProvider
from . import create, gpu, keys, reach
from .access import KeyAccess, items_of
from .api import ComputeApi, api_errors, connect, settings_of, target_of
from .preemption import preempted_at
from .queries import RUNNING, preemption

STOPPED = ("TERMINATED", "STOPPED")
SUSPENDED = "SUSPENDED"


def endpoint_of(project: str, s: GCESettings, instance: Any, *, host: str, proxy: str | None,
                user: str, identity: Any, host_keys: tuple[tuple[str, str], ...]) -> Endpoint:
    """How `up` reaches a running instance over SSH, as gcloud does (host keys checked
    under compute.<id>, a pushed key given a minute to be accepted)."""
    extra = {"project": project, "zone": s.zone, "instance": s.instance,
             "instance_id": str(instance.id)}
    gpus = sum(int(a.accelerator_count) for a in instance.guest_accelerators)
    if gpus:
        extra["gpus"] = str(gpus)
    return Endpoint(
        host=host,
        port=s.ssh_port,
        user=user,
        identity_file=identity,
        known_hosts=s.known_hosts or paths.ssh_dir() / keys.KNOWN_HOSTS_NAME,
        proxy_command=proxy,
        host_key_alias=f"compute.{instance.id}",
        trusted_host_keys=host_keys,
        auth_retry_seconds=60.0,
        description=f"gce {project}/{s.zone}/{s.instance}",
        extra=extra,
    )


class GceProvider(BaseProvider):
    """Implements `providers.Provider` for a profile with a `gce` section."""

    start_timeout = 600.0  # start/resume and boot until RUNNING
    create_timeout = 600.0  # insert until done
    host_key_timeout = 300.0  # a new VM's guest agent publishes its host keys
    gpu_timeout = 900.0  # a new Deep Learning VM installs its NVIDIA driver
    stop_timeout = 600.0
    poll_interval = 1.0

    def __init__(self, profile: Profile, *, environ: Mapping[str, str] | None = None) -> None:
        self.profile = profile
        self.settings = settings_of(profile)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._api: ComputeApi | None = None
        # close() on a fresh provider stops (or deletes) the VM: `down` for a runtime whose
        # owner died does that; after a prepare() that never found the instance, it does not.
        self._prepared = False
        self._found = False
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._closed = False
        self._token: str | None = None  # the creation this provider made (or is making)
        self._created = False
        self._up = False
        self._instance: Any = None
        self._key_access: KeyAccess | None = None

    @property
    def api(self) -> ComputeApi:
        if self._api is None:
            self._api = connect(self.profile, self.environ)
        return self._api

    @property
    def target(self) -> str:
        return target_of(self.api.project, self.settings)

    # --- Provider ----------------------------------------------------------------

    def prepare(self, progress: Progress) -> Endpoint:
        s, api = self.settings, self.api
        self._prepared = True
        progress(f"looking up {self.target}")
        instance = self._ensure_running(self._find_or_create(progress), progress)
        self._instance = instance
        access = self._access()
        items = items_of(instance.metadata)
        identity, local_user = self._identity()
        public = keys.ensure_key_pair(identity, local_user, self.environ, progress)
        oslogin = keys.metadata_flag(items, "enable-oslogin")
        if oslogin is None:
            oslogin = access.project_flag("enable-oslogin")
        if oslogin:
            two_factor = keys.metadata_flag(items, "enable-oslogin-2fa")
            if two_factor or (two_factor is None and access.project_flag("enable-oslogin-2fa")):
                raise CloudError(f"OS Login 2-step verification is on for {self.target}; "
                                 "remote-runtime cannot answer its prompts",
                                 hint="use an account exempt from 2-step verification, or "
                                 "set enable-oslogin-2fa to FALSE on the instance")
            user = access.oslogin_import(public, s.user, progress)
        else:
            user = local_user
            access.ensure_metadata_key(instance, user, public, progress)
        guest = keys.metadata_flag(items, "enable-guest-attributes")
        if guest is None:
            guest = access.project_flag("enable-guest-attributes")
        wait = time.monotonic() + self.host_key_timeout if self._created else None
        host_keys = reach.host_keys(api, s, self.target, progress, wait_until=wait,
                                    poll=self.poll_interval, cancelled=self._check_cancel) \
            if guest else ()
        host, proxy = reach.address(instance, s, api.project, self.target, self.environ,
                                    progress)
        return endpoint_of(api.project, s, instance, host=host, proxy=proxy, user=user,
                           identity=identity, host_keys=host_keys)

    def after_connect(self, session: Session, progress: Progress) -> list[str]:
        """A VM with GPUs: wait for a working nvidia-smi (a new Deep Learning VM installs
        its driver at first boot); on a VM we did not make, check once and only note it."""
        count = self._gpu_count()
        if not count:
            return []
        items = items_of(self._instance.metadata)
        installing = self._created or keys.metadata_flag(
            items, create.DRIVER_METADATA[0]) is True
        progress(f"checking the GPU{'s' if count > 1 else ''} (nvidia-smi)")
        try:
            gpus = gpu.wait(session, expected=count, progress=progress,
                            deadline=time.monotonic() + (self.gpu_timeout if installing else 0),
                            cancelled=self._check_cancel, interval=self.poll_interval * 5)
        except gpu.GpuError as exc:
            if installing:
                raise
            return [f"GPU: {exc.message}"]
        text = gpu.describe(gpus)
        progress(f"GPU {text}")
        return [f"GPU {text}"]

    def runtime_up(self) -> None:
        self._up = True

    def abort(self) -> None:
        self._cancel.set()

    def preempted(self) -> str | None:
        """When this VM was preempted (for a lost connection to explain itself), or None."""
        if not self._prepared or self._instance is None:
            return None
        try:
            return preemption(self.profile, str(self._instance.id), self.environ)
        except CloudError:
            return None

    def close(self, progress: Progress) -> None:
        with self._lock:
            self._closed = True
        self._cancel.set()
        s = self.settings
        if self._token is not None and not self._up:
            self._delete(progress, token=self._token,
                         why="created for a runtime that did not come up")
        elif s.delete_on_exit:
            if not (self._prepared and not self._found and self._token is None):
                self._delete(progress, token=None, why="delete_on_exit")
        elif s.stop_on_exit and not (self._prepared and not self._found):
            self._stop(progress)

    # --- create, delete, stop -----------------------------------------------------------

    def _find_or_create(self, progress: Progress) -> Any:
        instance = self._get_instance(missing_ok=self.settings.create is not None)
        return instance if instance is not None else self._create(progress)

    def _create(self, progress: Progress) -> Any:
        s, api = self.settings, self.api
        spec = s.create
        assert spec is not None
        deadline = time.monotonic() + self.create_timeout
        details = [create.accelerator_text(spec)] + (["Spot"] if spec.spot else []) + (
            [f"deleted by GCE after {spec.max_run_minutes} min"] if spec.max_run_minutes
            else [])
        progress(f"instance {s.instance} does not exist: creating it ({', '.join(details)})")
        image_link = create.resolve_image(api, spec.image, progress)
        ssh_keys = None
        if not self._access().project_flag("enable-oslogin"):
            identity, user = self._identity()
            public = keys.ensure_key_pair(identity, user, self.environ, progress)
            ssh_keys = keys.add_key(None, user, public)
        token = create.new_token()
        body = create.instance_body(
            s, project=api.project, image_link=image_link, ssh_keys=ssh_keys,
            labels=create.labels_for(spec, self.profile.profile_name, token))
        with self._lock:
            self._check_cancel()
            self._token = token
        try:
            create.insert(api, s, body, target=self.target, deadline=deadline,
                          progress=progress, cancelled=self._check_cancel)
        except BaseException:
            with self._lock:
                closed = self._closed
            if closed:  # close() ran meanwhile (another thread): delete what was made
                self._delete(progress, token=token, why="creation interrupted")
            raise
        self._created = True
        progress(f"instance {s.instance} created")
        instance = self._get_instance()
        return instance

    def _delete(self, progress: Progress, *, token: str | None, why: str) -> None:
        s = self.settings
        instance = self._get_instance(missing_ok=True)
        if instance is None:
            progress(f"instance {s.instance} is already gone")
            return
        if not create.created_by_us(instance, token):
            owner = "this run" if token else "remote-runtime"
            progress(f"not deleting instance {s.instance}: it was not created by {owner}")
            return
        progress(f"deleting instance {s.instance} and its boot disk ({why})")
        create.delete(self.api, s.zone, s.instance, target=self.target,
                      deadline=time.monotonic() + self.stop_timeout, progress=progress)
        progress(f"instance {s.instance} deleted")

    def _stop(self, progress: Progress) -> None:
        s, api = self.settings, self.api
        status = str(self._get_instance().status)
        if status in STOPPED:
            progress(f"instance {s.instance} is already stopped")
            return
        progress(f"stopping instance {s.instance} (stop_on_exit)")
        deadline = time.monotonic() + self.stop_timeout
        with api.calling("stopping the instance", self.target):
            op = api.instances.stop_unary(project=api.project, zone=s.zone,
                                          instance=s.instance, timeout=api.request_timeout)
        api.wait(op, zone=s.zone, doing="stopping the instance", target=self.target,
                 deadline=deadline, progress=progress)
        progress(f"instance {s.instance} stopped")

    # --- instance state ----------------------------------------------------------------

    def _get_instance(self, *, missing_ok: bool = False) -> Any:
        s, api = self.settings, self.api
        gexc = api_errors()
        try:
            with api.calling("reading the instance", self.target,
                             passthrough=lambda e: missing_ok and isinstance(e, gexc.NotFound)):
                instance = api.instances.get(project=api.project, zone=s.zone,
                                             instance=s.instance, timeout=api.request_timeout)
        except gexc.NotFound:
            return None
        self._found = True
        return instance

    def _ensure_running(self, instance: Any, progress: Progress) -> Any:
        s, api = self.settings, self.api
        deadline = time.monotonic() + self.start_timeout
        acted = self._created
        last = ""
        while True:
            self._check_cancel()
            status = str(instance.status) if instance is not None else "gone"
            if status == RUNNING:
                if acted:
                    progress(f"instance {s.instance} is RUNNING")
                return instance
            if self._created and (status in (*STOPPED, "STOPPING", "gone")):
                self._lost_while_starting(status)
            if not acted and (status in STOPPED or status == SUSPENDED):
                verb = "resume" if status == SUSPENDED else "start"
                if not s.start_if_stopped:
                    raise CloudError(
                        f"{self.target} is {status}",
                        hint=f"start it (gcloud compute instances {verb} {s.instance} "
                        f"--zone {s.zone} --project {api.project}) or set "
                        "start_if_stopped: true in the profile")
                progress(f"instance {s.instance} is {status}: {verb.rstrip('e')}ing it")
                doing = f"{verb.rstrip('e')}ing the instance"
                with api.calling(doing, self.target):
                    call = api.instances.resume_unary if verb == "resume" \
                        else api.instances.start_unary
                    op = call(project=api.project, zone=s.zone, instance=s.instance,
                              timeout=api.request_timeout)
                api.wait(op, zone=s.zone, doing=doing, target=self.target, deadline=deadline,
                         progress=progress, cancelled=self._check_cancel)
                acted = True
                instance = self._get_instance()
                continue
            if status != last:
                progress(f"instance {s.instance} is {status}: waiting for it")
            last = status
            if time.monotonic() >= deadline:
                raise CloudError(f"{self.target} is still {status} after "
                                 f"{self.start_timeout:.0f}s",
                                 hint="look at the instance in the Cloud console")
            if self._cancel.wait(max(0.0, min(self.poll_interval,
                                              deadline - time.monotonic()))):
                raise CloudError(f"stopped waiting for {self.target}: teardown began")
            instance = self._get_instance(missing_ok=self._created)

    def _lost_while_starting(self, status: str) -> None:
        """A VM we just created stopped or vanished before it ran: a Spot VM taken back."""
        s, spec = self.settings, self.settings.create
        assert spec is not None
        when = preempted_at(self.api, s.zone, s.instance)
        if when or spec.spot:
            raise CloudError(f"the Spot VM {s.instance} was preempted while starting: no "
                             f"Spot capacity for {create.accelerator_text(spec)} in zone "
                             f"{s.zone} right now",
                             hint="retry later, use another zone, or set create.spot: false")
        raise CloudError(f"{self.target} is {status} right after its creation",
                         hint="look at the instance in the Cloud console")

    # --- helpers ---------------------------------------------------------------------------

    def _access(self) -> KeyAccess:
        if self._key_access is None:
            self._key_access = KeyAccess(self.api, self.settings, self.target,
                                         self._get_instance)
        return self._key_access

    def _identity(self) -> tuple[Any, str]:
        s = self.settings
        return (s.identity_file or paths.ssh_dir() / keys.DEFAULT_KEY_NAME,
                s.user or keys.default_user(self.environ))

    def _gpu_count(self) -> int:
        if self._instance is None:
            return 0
        return sum(int(a.accelerator_count) for a in self._instance.guest_accelerators)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise CloudError(f"stopped while preparing {self.target}")
