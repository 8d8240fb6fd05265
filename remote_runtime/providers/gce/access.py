"""Getting the user's key onto a GCE VM, as gcloud does: instance or project metadata
(read-modify-write with the fingerprint), or OS Login. API calls only; the
conventions (user names, metadata entries) are in `keys`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...errors import CloudError
from ...options import Progress
from ...profiles import GCESettings
from . import keys
from .api import ComputeApi, account_email, api_errors, compute_module, oslogin_module

METADATA_ATTEMPTS = 5


def items_of(metadata: Any) -> dict[str, str]:
    return {item.key: item.value for item in (metadata.items if metadata else [])}


class KeyAccess:
    """Pushes the key for one instance; `get_instance` reads it fresh from the API."""

    metadata_timeout = 120.0

    def __init__(self, api: ComputeApi, settings: GCESettings, target: str,
                 get_instance: Callable[[], Any]) -> None:
        self.api = api
        self.settings = settings
        self.target = target
        self.get_instance = get_instance
        self._project_items: dict[str, str] | None = None

    def project(self) -> Any:
        api = self.api
        with api.calling("reading the project metadata", f"project '{api.project}'"):
            return api.projects.get(project=api.project, timeout=api.request_timeout)

    def project_flag(self, key: str) -> bool | None:
        """A boolean item of the project's metadata (read once)."""
        if self._project_items is None:
            self._project_items = items_of(self.project().common_instance_metadata)
        return keys.metadata_flag(self._project_items, key)

    def ensure_metadata_key(self, instance: Any, user: str, public: str,
                             progress: Progress) -> None:
        """Put `user:<key>` where the VM reads it, as gcloud decides (see ssh_utils)."""
        items = items_of(instance.metadata)
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

        self._update_metadata(lambda: self.get_instance().metadata, write, key=key, user=user,
                              public=public, where=f"instance {s.instance}", zone=s.zone,
                              progress=progress)

    def _project_key(self, user: str, public: str, progress: Progress) -> None:
        api = self.api

        def write(metadata: Any) -> Any:
            return api.projects.set_common_instance_metadata_unary(
                project=api.project, metadata_resource=metadata,
                timeout=api.request_timeout)

        self._update_metadata(lambda: self.project().common_instance_metadata, write,
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
            items = items_of(current)
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

    def oslogin_import(self, public: str, wanted: str | None, progress: Progress) -> str:
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
