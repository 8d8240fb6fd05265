"""Google Compute Engine profiles: start the VM, push the key, read host keys, pick an address.

`GceProvider.prepare()` does what `gcloud compute ssh` does before it runs ssh
(DESIGN.md fact 7) and returns an `Endpoint`; `close()` stops the VM when the
profile says `stop_on_exit`. Nothing here prints: progress goes through the
callback, failures leave as `CloudError`. Google's libraries are imported
lazily, and only by `api`, so other profiles work without them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

from ... import paths
from ...errors import CloudError
from ...options import Progress
from ...profiles import GCESettings, Profile
from ...ssh.endpoint import Endpoint
from ...ssh.streams import command_line
from . import keys
from .api import (
    ComputeApi,
    account_email,
    api_errors,
    compute_module,
    load_credentials,
    oslogin_module,
    resolve_endpoint,
    resolve_project,
)

RUNNING = "RUNNING"
STOPPED = ("TERMINATED", "STOPPED")
SUSPENDED = "SUSPENDED"
METADATA_ATTEMPTS = 5


def _settings(profile: Profile) -> GCESettings:
    if profile.gce is None:
        raise CloudError(f"profile '{profile.name}' is not a GCE profile")
    return profile.gce


def connect(profile: Profile, environ: Mapping[str, str]) -> ComputeApi:
    """Endpoint, credentials and project for a GCE profile (no API call yet)."""
    settings = _settings(profile)
    endpoint = resolve_endpoint(settings.api_endpoint, environ)
    creds = load_credentials(endpoint, environ)
    project = resolve_project(settings.project, creds, environ, profile.name)
    return ComputeApi(endpoint=endpoint, creds=creds, project=project)


def live_status(profile: Profile, environ: Mapping[str, str] | None = None) -> str:
    """The instance's status from the API (e.g. "RUNNING"), for `list --refresh`."""
    settings = _settings(profile)
    api = connect(profile, os.environ if environ is None else environ)
    target = _target(api.project, settings)
    with api.calling("reading the instance", target):
        instance = api.instances.get(project=api.project, zone=settings.zone,
                                     instance=settings.instance, timeout=api.request_timeout)
    return str(instance.status)


def _target(project: str, settings: GCESettings) -> str:
    return (f"instance '{settings.instance}' in project '{project}', "
            f"zone '{settings.zone}'")


def _items(metadata: Any) -> dict[str, str]:
    return {item.key: item.value for item in (metadata.items if metadata else [])}


class GceProvider:
    """Implements `providers.Provider` for a profile with a `gce` section."""

    start_timeout = 600.0  # start/resume and boot until RUNNING
    stop_timeout = 600.0
    metadata_timeout = 120.0
    poll_interval = 1.0

    def __init__(self, profile: Profile, *, environ: Mapping[str, str] | None = None) -> None:
        self.profile = profile
        self.settings = _settings(profile)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._api: ComputeApi | None = None
        # close() on a fresh provider stops the VM (`down` for a runtime whose owner
        # died does that); after a prepare() that never found the instance, it does not.
        self._prepared = False
        self._found = False

    @property
    def api(self) -> ComputeApi:
        if self._api is None:
            self._api = connect(self.profile, self.environ)
        return self._api

    @property
    def target(self) -> str:
        return _target(self.api.project, self.settings)

    # --- Provider ----------------------------------------------------------------

    def prepare(self, progress: Progress) -> Endpoint:
        s, api = self.settings, self.api
        self._prepared = True
        progress(f"looking up {self.target}")
        instance = self._ensure_running(progress)
        project_items: dict[str, str] | None = None

        def project_flag(key: str) -> bool | None:
            nonlocal project_items
            if project_items is None:
                project_items = _items(self._get_project().common_instance_metadata)
            return keys.metadata_flag(project_items, key)

        items = _items(instance.metadata)
        identity = s.identity_file or paths.ssh_dir() / keys.DEFAULT_KEY_NAME
        local_user = s.user or keys.default_user(self.environ)
        public = keys.ensure_key_pair(identity, local_user, self.environ, progress)
        oslogin = keys.metadata_flag(items, "enable-oslogin")
        if oslogin is None:
            oslogin = project_flag("enable-oslogin")
        if oslogin:
            two_factor = keys.metadata_flag(items, "enable-oslogin-2fa")
            if two_factor or (two_factor is None and project_flag("enable-oslogin-2fa")):
                raise CloudError(f"OS Login 2-step verification is on for {self.target}; "
                                 "remote-runtime cannot answer its prompts",
                                 hint="use an account exempt from 2-step verification, or "
                                 "set enable-oslogin-2fa to FALSE on the instance")
            user = self._oslogin_import(public, s.user, progress)
        else:
            user = local_user
            self._ensure_metadata_key(instance, user, public, progress)
        guest = keys.metadata_flag(items, "enable-guest-attributes")
        if guest is None:
            guest = project_flag("enable-guest-attributes")
        host_keys = self._host_keys(progress) if guest else ()
        host, proxy = self._address(instance, progress)
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
            description=f"gce {api.project}/{s.zone}/{s.instance}",
            extra={"project": api.project, "zone": s.zone, "instance": s.instance,
                   "instance_id": str(instance.id)},
        )

    def close(self, progress: Progress) -> None:
        if not self.settings.stop_on_exit or (self._prepared and not self._found):
            return
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

    def _get_instance(self) -> Any:
        s, api = self.settings, self.api
        with api.calling("reading the instance", self.target):
            instance = api.instances.get(project=api.project, zone=s.zone,
                                         instance=s.instance, timeout=api.request_timeout)
        self._found = True
        return instance

    def _get_project(self) -> Any:
        api = self.api
        with api.calling("reading the project metadata", f"project '{api.project}'"):
            return api.projects.get(project=api.project, timeout=api.request_timeout)

    def _ensure_running(self, progress: Progress) -> Any:
        s, api = self.settings, self.api
        deadline = time.monotonic() + self.start_timeout
        instance = self._get_instance()
        acted = False
        last = ""
        while True:
            status = str(instance.status)
            if status == RUNNING:
                if acted:
                    progress(f"instance {s.instance} is RUNNING")
                return instance
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
                         progress=progress)
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
            time.sleep(max(0.0, min(self.poll_interval, deadline - time.monotonic())))
            instance = self._get_instance()

    # --- keys ----------------------------------------------------------------------------

    def _ensure_metadata_key(self, instance: Any, user: str, public: str,
                             progress: Progress) -> None:
        """Put `user:<key>` where the VM reads it, as gcloud decides (see ssh_utils)."""
        items = _items(instance.metadata)
        if items.get(keys.LEGACY_SSH_KEYS, "").strip():
            # Legacy per-instance sshKeys make the VM ignore project keys.
            self._instance_key(user, public, keys.LEGACY_SSH_KEYS, progress)
        elif keys.metadata_flag(items, "block-project-ssh-keys"):
            self._instance_key(user, public, keys.SSH_KEYS, progress)
        elif keys.has_key(items.get(keys.SSH_KEYS), user, public):
            return  # already in the instance's own keys
        else:
            try:
                self._project_key(user, public, progress)
            except CloudError as exc:
                if "permission denied" not in exc.message:
                    raise
                # Like gcloud: without rights on project metadata, use the instance's.
                progress("cannot write project metadata: adding the key to the instance")
                self._instance_key(user, public, keys.SSH_KEYS, progress)

    def _instance_key(self, user: str, public: str, key: str, progress: Progress) -> None:
        s, api = self.settings, self.api

        def write(metadata: Any) -> Any:
            return api.instances.set_metadata_unary(
                project=api.project, zone=s.zone, instance=s.instance,
                metadata_resource=metadata, timeout=api.request_timeout)

        self._update_metadata(lambda: self._get_instance().metadata, write, key=key, user=user,
                              public=public, where=f"instance {s.instance}", zone=s.zone,
                              progress=progress)

    def _project_key(self, user: str, public: str, progress: Progress) -> None:
        api = self.api

        def write(metadata: Any) -> Any:
            return api.projects.set_common_instance_metadata_unary(
                project=api.project, metadata_resource=metadata,
                timeout=api.request_timeout)

        self._update_metadata(lambda: self._get_project().common_instance_metadata, write,
                              key=keys.SSH_KEYS, user=user, public=public,
                              where=f"project {api.project}", zone=None, progress=progress)

    def _update_metadata(self, read: Any, write: Any, *, key: str, user: str, public: str,
                         where: str, zone: str | None, progress: Progress) -> None:
        """Read-modify-write one metadata item, retrying when the fingerprint went stale."""
        gexc = api_errors()
        compute = compute_module()
        api = self.api
        doing = f"adding your SSH key to {where} metadata"
        for attempt in range(1, METADATA_ATTEMPTS + 1):
            current = read()
            items = _items(current)
            if keys.has_key(items.get(key), user, public):
                return
            if attempt == 1:
                progress(f"adding your SSH key for {user} to {where} metadata ({key})")
            items[key] = keys.add_key(items.get(key), user, public)
            updated = compute.Metadata(
                fingerprint=current.fingerprint,
                items=[compute.Items(key=k, value=v) for k, v in items.items()])
            try:
                with api.calling(doing, self.target if zone else where,
                                 passthrough=lambda e: isinstance(e, gexc.PreconditionFailed)):
                    op = write(updated)
            except gexc.PreconditionFailed:
                progress(f"{where} metadata changed meanwhile: retrying ({attempt})")
                continue
            api.wait(op, zone=zone, doing=doing, target=where,
                     deadline=time.monotonic() + self.metadata_timeout, progress=progress)
            return
        raise CloudError(f"{where} metadata kept changing while {doing} "
                         f"({METADATA_ATTEMPTS} attempts)", hint="try again in a moment")

    def _oslogin_import(self, public: str, wanted: str | None, progress: Progress) -> str:
        api = self.api
        email = self.settings.account or account_email(api.creds)
        if not email:
            raise CloudError(f"OS Login is enabled for {self.target}, but the Google account "
                             "of the credentials is unknown",
                             hint="set gce.account in the profile to your account's email")
        progress(f"importing your SSH key into OS Login for {email}")
        common = oslogin_module().common
        with api.calling("importing the key into OS Login", f"OS Login user '{email}'"):
            response = api.oslogin.import_ssh_public_key(
                parent=f"users/{email}", ssh_public_key=common.SshPublicKey(key=public),
                project_id=api.project, timeout=api.request_timeout)
        accounts = list(response.login_profile.posix_accounts)
        names = [a.username for a in accounts if a.username]
        if wanted and wanted in names:
            return wanted
        primary = [a.username for a in accounts if a.primary and a.username]
        if not (primary or names):
            raise CloudError(f"OS Login returned no POSIX account for {email} in project "
                             f"'{api.project}'",
                             hint="grant the account roles/compute.osLogin on the project")
        return (primary or names)[0]

    # --- host keys and address ------------------------------------------------------------

    def _host_keys(self, progress: Progress) -> tuple[tuple[str, str], ...]:
        s, api = self.settings, self.api
        gexc = api_errors()
        request = compute_module().GetGuestAttributesInstanceRequest(
            project=api.project, zone=s.zone, instance=s.instance, query_path="hostkeys/")
        try:
            with api.calling("reading host keys from guest attributes", self.target,
                             passthrough=lambda e: isinstance(e, gexc.NotFound | gexc.BadRequest)):
                attributes = api.instances.get_guest_attributes(
                    request=request, timeout=api.request_timeout)
        except (gexc.NotFound, gexc.BadRequest):
            progress("the instance publishes no host keys: checking against known_hosts")
            return ()
        found = keys.host_keys_from_guest_attributes(
            [(i.namespace, i.key, i.value) for i in attributes.query_value.items])
        if found:
            progress(f"host keys from guest attributes: {', '.join(k for k, _ in found)}")
        return found

    def _address(self, instance: Any, progress: Progress) -> tuple[str, str | None]:
        """(host, proxy_command) for the address mode; a profile proxy_command wins."""
        s, api = self.settings, self.api
        nics = list(instance.network_interfaces)
        internal = nics[0].network_i_p if nics else ""
        external = next((c.nat_i_p for c in (nics[0].access_configs if nics else [])
                         if c.nat_i_p), "")
        mode = s.address
        if mode == "auto":
            mode = "external" if external else ("internal" if s.proxy_command else "iap")
        if mode == "external" and not external:
            raise CloudError(f"{self.target} has no external IP address",
                             hint="set address: iap (through gcloud) or address: internal")
        if mode == "internal" and not internal:
            raise CloudError(f"{self.target} has no internal IP address")
        if mode != "iap":
            return (external if mode == "external" else internal), s.proxy_command
        if s.proxy_command:
            return s.instance, s.proxy_command
        if shutil.which("gcloud", path=self.environ.get("PATH", os.defpath)) is None:
            raise CloudError(f"{self.target} is reached through IAP, which needs gcloud",
                             hint="install the Google Cloud SDK, or set address: internal "
                             "or a proxy_command in the profile")
        progress(f"connecting through IAP (gcloud compute start-iap-tunnel {s.instance})")
        # As `gcloud compute ssh` does; quoted for how this OS runs ProxyCommands
        # (on Windows the path of gcloud.cmd, which CreateProcess would not find).
        return s.instance, command_line([
            "gcloud", "compute", "start-iap-tunnel", s.instance, str(s.ssh_port),
            "--listen-on-stdin", "--zone", s.zone, "--project", api.project])

