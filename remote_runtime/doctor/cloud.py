"""Stage `cloud` (GCE profiles): what `up` asks of the Compute API before SSH, read-only.
The credentials and the project, the instance and its state, the user's key where the
VM reads it (instance or project metadata, or OS Login), the host keys its guest
published, and the address (external, internal, or IAP through gcloud). The doctor
starts, creates and changes nothing: where `up` would, it says so, and the links past
a VM that is not running are skipped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import CloudError
from ..options import quiet
from ..providers.gce import api as gapi
from ..providers.gce import keys, reach
from ..providers.gce.access import KeyAccess, items_of
from ..providers.gce.provider import STOPPED, SUSPENDED, endpoint_of
from ..providers.gce.queries import RUNNING
from .walk import Walk

STAGE = "cloud"


def run(walk: Walk) -> None:
    profile = walk.profile
    if profile is None or profile.gce is None:
        return
    if walk.blocked(STAGE):
        return
    environ = walk.environ if walk.environ is not None else dict(os.environ)
    try:
        api = gapi.connect(profile, environ)
    except CloudError as exc:
        walk.fail(STAGE, "credentials", exc.message, exc.hint or gapi.LOGIN_HINT,
                  stops="no usable Google Cloud credentials")
        return
    who = "anonymous (an emulator)" if api.creds.anonymous else _account(api)
    walk.ok(STAGE, "credentials", f"{who}; Compute API at "
            f"{api.endpoint or 'compute.googleapis.com'}")
    settings = profile.gce
    target = gapi.target_of(api.project, settings)
    instance = _instance(walk, api, target)
    if instance is None:
        return
    access = KeyAccess(api, settings, target, lambda: instance)
    user, identity = _key(walk, api, access, instance, environ)
    host_keys = _host_keys(walk, api, access, instance, target)
    try:
        host, proxy = reach.address(instance, settings, api.project, target, environ, quiet)
    except CloudError as exc:
        walk.fail("reach", "address", exc.message, exc.hint or "",
                  stops="the VM has no address to reach")
        return
    walk.endpoint = endpoint_of(api.project, settings, instance, host=host, proxy=proxy,
                                user=user, identity=identity, host_keys=host_keys)
    via = "IAP (gcloud compute start-iap-tunnel)" if proxy and "start-iap-tunnel" in proxy \
        else (f"ProxyCommand {proxy}" if proxy else f"{host} port {settings.ssh_port}")
    walk.ok("reach", "address", f"{settings.address} address: {via}")


def _account(api: gapi.ComputeApi) -> str:
    email = getattr(api.creds.credentials, "service_account_email", None)
    kind = type(api.creds.credentials).__module__.split(".")[-1]
    return f"application default credentials ({email or kind})"


def _instance(walk: Walk, api: gapi.ComputeApi, target: str) -> Any | None:
    """The instance, when it runs; otherwise the check says what `up` would do."""
    profile = walk.profile
    assert profile is not None and profile.gce is not None
    s = profile.gce
    gexc = gapi.api_errors()
    try:
        with api.calling("reading the project", f"project '{api.project}'"):
            api.projects.get(project=api.project, timeout=api.request_timeout)
        walk.ok(STAGE, "project", f"{api.project} answers")
        with api.calling("reading the instance", target,
                         passthrough=lambda e: isinstance(e, gexc.NotFound)):
            instance = api.instances.get(project=api.project, zone=s.zone,
                                         instance=s.instance, timeout=api.request_timeout)
    except gexc.NotFound:
        if s.create is not None:
            walk.warn(STAGE, "instance", f"{target} does not exist: `up` creates it "
                      "(the profile's create section); doctor creates nothing")
            walk.stop("the VM does not exist yet")
        else:
            walk.fail(STAGE, "instance", f"{target} does not exist",
                      f"check the project, zone and instance name (gcloud compute instances "
                      f"list --project {api.project}), or add a create section",
                      stops="the VM does not exist")
        return None
    except CloudError as exc:
        name = "project" if "project" in exc.message and "instance" not in exc.message \
            else "instance"
        walk.fail(STAGE, name, exc.message, exc.hint or "", stops="the Compute API refused")
        return None
    status = str(instance.status)
    machine = str(instance.machine_type).rsplit("/", 1)[-1]
    if status == RUNNING:
        walk.ok(STAGE, "instance", f"{s.instance} is RUNNING ({machine}, id {instance.id})")
        return instance
    verb = "resume" if status == SUSPENDED else "start"
    if status in (*STOPPED, SUSPENDED) and s.start_if_stopped:
        walk.warn(STAGE, "instance", f"{s.instance} is {status}: `up` will {verb} it; "
                  "doctor does not", f"start it ({verb} with gcloud compute instances "
                  f"{verb} {s.instance} --zone {s.zone}) and run doctor again to check the rest")
        walk.stop(f"the VM is {status}")
    elif status in (*STOPPED, SUSPENDED):
        walk.fail(STAGE, "instance", f"{s.instance} is {status}",
                  f"{verb} it (gcloud compute instances {verb} {s.instance} --zone {s.zone} "
                  f"--project {api.project}) or set start_if_stopped: true",
                  stops=f"the VM is {status}")
    else:
        walk.warn(STAGE, "instance", f"{s.instance} is {status}: `up` waits for it")
        walk.stop(f"the VM is {status}")
    return None


def _key(walk: Walk, api: gapi.ComputeApi, access: KeyAccess, instance: Any,
         environ: dict[str, str]) -> tuple[str, Path]:
    """The user `up` logs in as, and the key it offers; says whether the VM has the key."""
    profile = walk.profile
    assert profile is not None and profile.gce is not None
    s = profile.gce
    identity = Path(s.identity_file or paths.ssh_dir() / keys.DEFAULT_KEY_NAME).expanduser()
    user = s.user or keys.default_user(environ)
    public = _public_line(identity)
    items = items_of(instance.metadata)
    oslogin = keys.metadata_flag(items, "enable-oslogin")
    if oslogin is None:
        oslogin = access.project_flag("enable-oslogin")
    if public is None:
        walk.warn(STAGE, "ssh key", f"no key pair at {identity} yet: `up` creates it and "
                  "gives it to the VM", "run `remote-runtime up` once")
        walk.stop(f"your key pair {identity} does not exist yet")
        return user, identity
    if oslogin:
        return _oslogin(walk, api, access, items, identity, public) or user, identity
    found = _key_found(access, items, user, public)
    if found:
        walk.ok(STAGE, "ssh key", f"{identity}.pub for {user} is in the {found} metadata")
    else:
        place = "instance" if _instance_only(items) else "project"
        walk.warn(STAGE, "ssh key", f"{identity}.pub for {user} is not in the VM's metadata "
                  f"yet: `up` adds it (to the {place}'s); until then the VM refuses it")
    return user, identity


def _oslogin(walk: Walk, api: gapi.ComputeApi, access: KeyAccess, items: dict[str, str],
             identity: Path, public: str) -> str | None:
    """OS Login: the account's login profile (read, never written) holds the key, and names
    the POSIX user `up` logs in as."""
    profile = walk.profile
    assert profile is not None and profile.gce is not None
    two_factor = keys.metadata_flag(items, "enable-oslogin-2fa")
    if two_factor or (two_factor is None and access.project_flag("enable-oslogin-2fa")):
        walk.fail(STAGE, "ssh key", "OS Login 2-step verification is on: remote-runtime "
                  "cannot answer its prompts", "use an account exempt from 2-step "
                  "verification, or set enable-oslogin-2fa to FALSE on the instance",
                  stops="OS Login asks for 2-step verification")
        return None
    email = profile.gce.account or gapi.account_email(api.creds)
    if not email:
        walk.fail(STAGE, "ssh key", "OS Login is on, but the Google account of the "
                  "credentials is unknown", "set gce.account in the profile to your "
                  "account's email", stops="the OS Login account is unknown")
        return None
    try:
        with api.calling("reading the OS Login profile", f"OS Login user '{email}'"):
            login = api.oslogin.get_login_profile(
                request={"name": f"users/{email}", "project_id": api.project},
                timeout=api.request_timeout)
    except CloudError as exc:
        walk.warn(STAGE, "ssh key", f"OS Login is on; its profile of {email} cannot be "
                  f"read ({exc.message}): `up` imports your key there")
        return None
    names = [a.username for a in login.posix_accounts if a.username]
    primary = next((a.username for a in login.posix_accounts if a.primary and a.username),
                   names[0] if names else None)
    has = any(_same_key(k.key, public) for k in login.ssh_public_keys.values())
    as_user = f"; logs in as {primary}" if primary else ""
    if has:
        walk.ok(STAGE, "ssh key", f"OS Login: {identity}.pub is in {email}'s login "
                f"profile{as_user}")
    else:
        walk.warn(STAGE, "ssh key", f"OS Login: {identity}.pub is not in {email}'s login "
                  f"profile yet: `up` imports it{as_user}")
    wanted = profile.gce.user
    return wanted if wanted and wanted in names else primary


def _same_key(line: str, public: str) -> bool:
    try:
        return keys.parse_public_key(line)[:2] == keys.parse_public_key(public)[:2]
    except ValueError:
        return False


def _instance_only(items: dict[str, str]) -> bool:
    """The VM reads only its own keys (legacy sshKeys, or block-project-ssh-keys)."""
    return bool(items.get(keys.LEGACY_SSH_KEYS, "").strip()) or bool(
        keys.metadata_flag(items, "block-project-ssh-keys"))


def _key_found(access: KeyAccess, items: dict[str, str], user: str, public: str) -> str:
    """Where the VM already has the key (as `up` and gcloud look), or ""."""
    if items.get(keys.LEGACY_SSH_KEYS, "").strip():
        return "instance (sshKeys)" if keys.has_key(items[keys.LEGACY_SSH_KEYS], user,
                                                    public) else ""
    if keys.has_key(items.get(keys.SSH_KEYS), user, public):
        return "instance (ssh-keys)"
    if keys.metadata_flag(items, "block-project-ssh-keys"):
        return ""
    project = items_of(access.project().common_instance_metadata)
    return "project (ssh-keys)" if keys.has_key(project.get(keys.SSH_KEYS), user, public) else ""


def _public_line(identity: Path) -> str | None:
    try:
        line = Path(f"{identity}.pub").read_text(encoding="ascii").splitlines()[0].strip()
        keys.parse_public_key(line)
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
    return line if identity.exists() else None


def _host_keys(walk: Walk, api: gapi.ComputeApi, access: KeyAccess, instance: Any,
               target: str) -> tuple[tuple[str, str], ...]:
    profile = walk.profile
    assert profile is not None and profile.gce is not None
    items = items_of(instance.metadata)
    guest = keys.metadata_flag(items, "enable-guest-attributes")
    if guest is None:
        guest = access.project_flag("enable-guest-attributes")
    alias = f"compute.{instance.id}"
    if not guest:
        walk.warn(STAGE, "host keys", "guest attributes are off: the host key is checked "
                  f"against known_hosts under {alias}",
                  "set enable-guest-attributes=TRUE in the metadata to have it published")
        return ()
    try:
        found = reach.host_keys(api, profile.gce, target, quiet)
    except CloudError as exc:
        walk.warn(STAGE, "host keys", f"cannot read them: {exc.message}")
        return ()
    if found:
        walk.ok(STAGE, "host keys", f"published in guest attributes: "
                f"{', '.join(kind for kind, _ in found)} (checked under {alias})")
    else:
        walk.warn(STAGE, "host keys", "the VM publishes none (its guest agent may still be "
                  f"starting): checked against known_hosts under {alias}")
    return found
