"""GCE provider: the real google-cloud-compute and os-login clients against fake_compute."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.cloud
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from support.fake_compute import FakeCompute, Instance, Metadata
from support.gce import GuestAgent

from remote_runtime.errors import CloudError, ExitCode, HostKeyError
from remote_runtime.options import UpOptions
from remote_runtime.profiles import GCESettings, JupyterSettings, Profile
from remote_runtime.providers.gce import keys as gce_keys
from remote_runtime.providers.gce.api import account_email, connect
from remote_runtime.providers.gce.provider import GceProvider
from remote_runtime.providers.gce.queries import live_status
from remote_runtime.runtime import Runtime
from sandbox import Sandbox, to_yaml

PROJECT, ZONE, NAME = "proj-1", "us-central1-a", "dl-vm"
OTHER_KEY = ("bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBobBobBobBobBobBobBobBobBobBobBobBobBobBob"
             " bob")
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIEd1ZXN0QXR0cmlidXRlSG9zdEtleUZvclRlc3RpbmdYWA=="


@pytest.fixture(scope="session")
def session_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RSA 3072 key pair made up front: ssh-keygen takes about half a second."""
    key = tmp_path_factory.mktemp("key") / gce_keys.DEFAULT_KEY_NAME
    gce_keys.ensure_key_pair(key, "alice", os.environ, lambda _line: None)
    return key


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_key: Path) -> Path:
    """No test reads or writes the real ~/.ssh or gcloud configuration."""
    home = tmp_path / "gce-home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    for suffix in ("", ".pub"):
        shutil.copy2(f"{session_key}{suffix}", home / ".ssh" / f"{session_key.name}{suffix}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / ".config" / "gcloud"))
    for name in ("REMOTE_RUNTIME_COMPUTE_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS",
                 "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "XDG_CONFIG_HOME",
                 "XDG_STATE_HOME", "XDG_CACHE_HOME", "REMOTE_RUNTIME_CONFIG_DIR",
                 "REMOTE_RUNTIME_STATE_DIR", "REMOTE_RUNTIME_CACHE_DIR",
                 "REMOTE_RUNTIME_PROFILES"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute(operation_seconds=0.1, boot_seconds=0.3, max_wait_seconds=0.5) as server:
        server.add_project(PROJECT, {"team": "ml", "ssh-keys": OTHER_KEY})
        yield server


def profile(**gce: Any) -> Profile:
    settings = {"zone": ZONE, "instance": NAME, "project": PROJECT, **gce}
    return Profile(name="my-gce-vm", source=Path("profiles.yaml"), jupyter=JupyterSettings(),
                   gce=GCESettings(**settings))


def environ(fake: FakeCompute, **extra: str) -> dict[str, str]:
    return {"REMOTE_RUNTIME_COMPUTE_ENDPOINT": fake.url, "USER": "alice",
            "PATH": os.environ["PATH"], **extra}


def provider(fake: FakeCompute, env: dict[str, str] | None = None, **gce: Any) -> GceProvider:
    result = GceProvider(profile(**gce), environ=env if env is not None else environ(fake))
    result.poll_interval = 0.05
    return result


class Progress:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


def public_key(home: Path) -> str:
    return (home / ".ssh" / "google_compute_engine.pub").read_text().strip()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the happy path -----------------------------------------------------------------


def test_running_instance_key_in_project_metadata(fake: FakeCompute, home: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(home / ".ssh")  # the key pair and ~/.ssh are created as gcloud does
    vm = fake.add_instance(PROJECT, ZONE, NAME, metadata={"startup-script": "echo hi"})
    progress = Progress()
    endpoint = provider(fake).prepare(progress)

    assert capsys.readouterr() == ("", "")  # progress goes through the callback only
    assert endpoint.host == "203.0.113.10" and endpoint.port == 22
    assert endpoint.user == "alice"
    assert endpoint.identity_file == home / ".ssh" / "google_compute_engine"
    assert endpoint.known_hosts == home / ".ssh" / "google_compute_known_hosts"
    assert endpoint.host_key_alias == f"compute.{vm.id}"
    assert endpoint.proxy_command is None and endpoint.trusted_host_keys == ()
    assert endpoint.auth_retry_seconds == 60.0
    assert endpoint.description == f"gce {PROJECT}/{ZONE}/{NAME}"
    # The key was created as gcloud does, and its entry lands in project metadata
    # after every existing entry and item, which stay as they were.
    kind, _, comment = gce_keys.parse_public_key(public_key(home))
    assert (kind, comment) == ("ssh-rsa", "alice")
    assert oct((home / ".ssh" / "google_compute_engine").stat().st_mode & 0o777) == "0o600"
    items = fake.projects[PROJECT].items
    assert items["team"] == "ml"
    assert items["ssh-keys"] == f"{OTHER_KEY}\nalice:{public_key(home)}"
    assert vm.metadata.items == {"startup-script": "echo hi"}
    assert not fake.calls_to("start") and not fake.calls_to("setMetadata")
    assert fake.calls_to("wait")  # the metadata operation was waited for
    assert "adding your SSH key for alice to project proj-1 metadata" in progress.text()


def test_key_already_in_metadata_is_not_written_again(fake: FakeCompute, home: Path) -> None:
    fake.add_instance(PROJECT, ZONE, NAME)
    provider(fake).prepare(Progress())
    before = fake.projects[PROJECT].fingerprint
    provider(fake).prepare(Progress())
    assert len(fake.calls_to("setCommonInstanceMetadata")) == 1
    assert fake.projects[PROJECT].fingerprint == before


def test_stopped_instance_is_started_and_waited_for(fake: FakeCompute) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    progress = Progress()
    endpoint = provider(fake).prepare(progress)
    assert vm.current_status() == "RUNNING"
    assert len(fake.calls_to("start", "POST")) == 1
    start = fake.calls_to("start")[0]
    assert start.path == f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/{NAME}/start"
    # The zone operation was waited on through our endpoint, then the instance polled
    # (STAGING) until RUNNING.
    assert any("/zones/us-central1-a/operations/" in c.path for c in fake.calls_to("wait"))
    assert "instance dl-vm is TERMINATED: starting it" in progress.lines
    assert "instance dl-vm is STAGING: waiting for it" in progress.lines
    assert progress.lines[-1] != "" and "instance dl-vm is RUNNING" in progress.lines
    assert endpoint.host == vm.nat_ip


def test_suspended_instance_is_resumed(fake: FakeCompute) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME, status="SUSPENDED")
    provider(fake).prepare(Progress())
    assert fake.calls_to("resume", "POST") and not fake.calls_to("start")
    assert vm.current_status() == "RUNNING"


def test_stopping_instance_is_waited_for_then_started(fake: FakeCompute) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME, status="STOPPING",
                           pending=("TERMINATED", time.monotonic() + 0.2))
    progress = Progress()
    provider(fake).prepare(progress)
    assert "instance dl-vm is STOPPING: waiting for it" in progress.lines
    assert len(fake.calls_to("start")) == 1 and vm.current_status() == "RUNNING"


def test_stopped_instance_without_start_if_stopped(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    with pytest.raises(CloudError) as err:
        provider(fake, start_if_stopped=False).prepare(Progress())
    assert "is TERMINATED" in err.value.message
    assert err.value.hint is not None
    assert f"gcloud compute instances start {NAME} --zone {ZONE}" in err.value.hint
    assert not fake.calls_to("start")


def test_start_times_out_with_a_deadline(fake: FakeCompute) -> None:
    fake.boot_seconds = 30.0
    fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    gce = provider(fake)
    gce.start_timeout = 0.8
    with pytest.raises(CloudError, match="still STAGING after 1s"):
        gce.prepare(Progress())


def test_operation_wait_has_a_deadline(fake: FakeCompute) -> None:
    fake.operation_seconds = 30.0
    fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    gce = provider(fake)
    gce.start_timeout = 1.0
    with pytest.raises(CloudError, match=r"timed out after 1s while starting the instance "
                       r"\(operation operation-\d+-start is still running\)") as err:
        gce.prepare(Progress())
    assert err.value.hint is not None and "gcloud compute operations describe" in err.value.hint


def test_fake_serves_list_and_operation_get_to_the_real_client(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME)
    fake.add_instance(PROJECT, ZONE, "vm2", status="TERMINATED")
    options = {"api_endpoint": fake.url}
    instances = compute_v1.InstancesClient(credentials=AnonymousCredentials(),
                                           client_options=options, transport="rest")
    listed = {i.name: i.status for i in instances.list(project=PROJECT, zone=ZONE)}
    assert listed == {NAME: "RUNNING", "vm2": "TERMINATED"}
    op = instances.stop_unary(project=PROJECT, zone=ZONE, instance=NAME)
    operations = compute_v1.ZoneOperationsClient(credentials=AnonymousCredentials(),
                                                 client_options=options, transport="rest")
    assert operations.get(project=PROJECT, zone=ZONE, operation=op.name).name == op.name


# --- metadata ------------------------------------------------------------------------


def test_block_project_ssh_keys_puts_the_key_in_instance_metadata(fake: FakeCompute,
                                                                   home: Path) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME, metadata={
        "block-project-ssh-keys": "TRUE", "ssh-keys": OTHER_KEY + "\n", "other": "x"})
    project_before = dict(fake.projects[PROJECT].items)
    provider(fake).prepare(Progress())
    assert vm.metadata.items == {
        "block-project-ssh-keys": "TRUE",
        "ssh-keys": f"{OTHER_KEY}\nalice:{public_key(home)}",
        "other": "x",
    }
    assert fake.projects[PROJECT].items == project_before
    assert not fake.calls_to("setCommonInstanceMetadata")


def test_legacy_instance_sshkeys_get_the_key(fake: FakeCompute, home: Path) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME, metadata={"sshKeys": OTHER_KEY})
    provider(fake).prepare(Progress())
    assert vm.metadata.items["sshKeys"] == f"{OTHER_KEY}\nalice:{public_key(home)}"
    assert "ssh-keys" not in vm.metadata.items


def test_fingerprint_conflict_is_retried_and_keeps_the_concurrent_change(
        fake: FakeCompute, home: Path) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME, metadata={"block-project-ssh-keys": "true"})

    def concurrent_writer(meta: Metadata) -> None:
        meta.items["ssh-keys"] = OTHER_KEY
        meta.items["added-meanwhile"] = "yes"
        meta.fingerprint = "changed-by-someone-else"

    fake.before_set_metadata = concurrent_writer
    progress = Progress()
    provider(fake).prepare(progress)
    assert len(fake.calls_to("setMetadata")) == 2
    assert vm.metadata.items["ssh-keys"] == f"{OTHER_KEY}\nalice:{public_key(home)}"
    assert vm.metadata.items["added-meanwhile"] == "yes"
    assert any("changed meanwhile: retrying" in line for line in progress.lines)


def test_project_metadata_forbidden_falls_back_to_instance(fake: FakeCompute,
                                                          home: Path) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME)
    fake.inject(403, method="POST", path="setCommonInstanceMetadata$",
                permission="compute.projects.setCommonInstanceMetadata",
                message="Required 'compute.projects.setCommonInstanceMetadata' permission")
    provider(fake).prepare(Progress())
    assert vm.metadata.items["ssh-keys"] == f"alice:{public_key(home)}"
    assert "alice:" not in fake.projects[PROJECT].items["ssh-keys"]


def test_profile_user_and_identity_file(fake: FakeCompute, tmp_path: Path) -> None:
    fake.add_instance(PROJECT, ZONE, NAME)
    key = tmp_path / "keys" / "vm_key"
    endpoint = provider(fake, user="carol", identity_file=key).prepare(Progress())
    assert endpoint.user == "carol" and endpoint.identity_file == key
    line = Path(f"{key}.pub").read_text().strip()
    assert f"carol:{line}" in fake.projects[PROJECT].items["ssh-keys"]


# --- OS Login ------------------------------------------------------------------------


def test_oslogin_imports_the_key_and_uses_the_posix_name(fake: FakeCompute, home: Path) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, metadata={"enable-oslogin": "TRUE"})
    before = dict(fake.projects[PROJECT].items)
    endpoint = provider(fake, account="alice@example.com").prepare(Progress())
    assert endpoint.user == "alice_example_com"
    assert fake.oslogin_keys["alice@example.com"] == [public_key(home)]
    (call,) = [c for c in fake.calls if c.path.endswith(":importSshPublicKey")]
    assert call.path == "/v1/users/alice%40example.com:importSshPublicKey"
    assert call.query["projectId"] == PROJECT
    assert fake.projects[PROJECT].items == before
    assert not fake.calls_to("setMetadata") and not fake.calls_to("setCommonInstanceMetadata")


def test_oslogin_from_project_metadata_unless_the_instance_turns_it_off(
        fake: FakeCompute) -> None:
    fake.add_project(PROJECT, {"enable-oslogin": "true"})
    fake.add_instance(PROJECT, ZONE, NAME)
    endpoint = provider(fake, account="svc@proj-1.iam.gserviceaccount.com").prepare(Progress())
    assert endpoint.user == "svc_proj_1_iam_gserviceaccount_com"

    fake.add_instance(PROJECT, ZONE, "vm2", metadata={"enable-oslogin": "FALSE"})
    endpoint = provider(fake, instance="vm2", account="x@example.com").prepare(Progress())
    assert endpoint.user == "alice" and "x@example.com" not in fake.oslogin_keys


def test_oslogin_needs_an_account(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, metadata={"enable-oslogin": "TRUE"})
    with pytest.raises(CloudError, match="account of the credentials is unknown") as err:
        provider(fake).prepare(Progress())
    assert err.value.hint is not None and "gce.account" in err.value.hint


def test_oslogin_two_factor_is_refused(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, metadata={"enable-oslogin": "TRUE",
                                                      "enable-oslogin-2fa": "TRUE"})
    with pytest.raises(CloudError, match="2-step verification"):
        provider(fake, account="a@example.com").prepare(Progress())


# --- host keys -----------------------------------------------------------------------


def test_guest_attribute_host_keys(fake: FakeCompute) -> None:
    rsa = base64.b64encode(b"\0\0\0\x07ssh-rsa" + b"k" * 40).decode()
    fake.add_instance(PROJECT, ZONE, NAME, metadata={"enable-guest-attributes": "TRUE"},
                      host_keys={"ssh-ed25519": ED25519 + "\nextra", "ssh-rsa": rsa,
                                 "ssh-dss": rsa, "ecdsa-sha2-nistp256": "not base64!"})
    progress = Progress()
    endpoint = provider(fake).prepare(progress)
    assert endpoint.trusted_host_keys == (("ssh-ed25519", ED25519), ("ssh-rsa", rsa))
    call = fake.calls_to("getGuestAttributes")[0]
    assert call.query["queryPath"] == "hostkeys/"
    assert "host keys from guest attributes: ssh-ed25519, ssh-rsa" in progress.lines


def test_guest_attributes_enabled_but_none_published(fake: FakeCompute) -> None:
    fake.add_project(PROJECT, {"enable-guest-attributes": "TRUE"})
    fake.add_instance(PROJECT, ZONE, NAME)
    progress = Progress()
    assert provider(fake).prepare(progress).trusted_host_keys == ()
    assert fake.calls_to("getGuestAttributes")
    assert any("publishes no host keys" in line for line in progress.lines)


def test_guest_attributes_not_enabled_are_not_read(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, host_keys={"ssh-ed25519": ED25519},
                      metadata={"enable-guest-attributes": "FALSE"})
    assert provider(fake).prepare(Progress()).trusted_host_keys == ()
    assert not fake.calls_to("getGuestAttributes")


# --- address -------------------------------------------------------------------------


def test_address_internal(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME)
    endpoint = provider(fake, address="internal").prepare(Progress())
    assert (endpoint.host, endpoint.proxy_command) == ("10.128.0.2", None)


def iap_command(port: int = 22) -> str:
    return shlex.join(["gcloud", "compute", "start-iap-tunnel", NAME, str(port),
                       "--listen-on-stdin", "--zone", ZONE, "--project", PROJECT])


def gcloud_path(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text("#!/bin/sh\nexit 0\n")
    gcloud.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_address_iap(fake: FakeCompute, tmp_path: Path) -> None:
    fake.add_instance(PROJECT, ZONE, NAME)
    gce = provider(fake, environ(fake, PATH=gcloud_path(tmp_path)), address="iap", ssh_port=2222)
    endpoint = gce.prepare(Progress())
    assert endpoint.host == NAME and endpoint.port == 2222
    assert endpoint.proxy_command == iap_command(2222)


def test_address_auto_without_external_ip_uses_iap(fake: FakeCompute, tmp_path: Path) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, nat_ip=None)
    endpoint = provider(fake, environ(fake, PATH=gcloud_path(tmp_path))).prepare(Progress())
    assert (endpoint.host, endpoint.proxy_command) == (NAME, iap_command())


def test_iap_without_gcloud(fake: FakeCompute, tmp_path: Path) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, nat_ip=None)
    # Also no ssh-keygen: the key pair is written with `cryptography` instead.
    env = environ(fake, PATH=str(tmp_path / "empty"))
    with pytest.raises(CloudError, match="IAP, which needs gcloud") as err:
        provider(fake, env).prepare(Progress())
    assert err.value.hint is not None and "address: internal" in err.value.hint


def test_address_external_without_external_ip(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, nat_ip=None)
    with pytest.raises(CloudError, match="has no external IP address"):
        provider(fake, address="external").prepare(Progress())


def test_profile_proxy_command_wins_but_keys_are_still_pushed(fake: FakeCompute,
                                                             home: Path) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED", nat_ip=None,
                      metadata={"enable-guest-attributes": "TRUE"},
                      host_keys={"ssh-ed25519": ED25519})
    endpoint = provider(fake, proxy_command="ssh -W %h:%p bastion").prepare(Progress())
    assert endpoint.proxy_command == "ssh -W %h:%p bastion"
    assert endpoint.host == "10.128.0.2"  # auto with a proxy: the internal address
    assert endpoint.trusted_host_keys == (("ssh-ed25519", ED25519),)
    assert fake.calls_to("start") and f"alice:{public_key(home)}" in \
        fake.projects[PROJECT].items["ssh-keys"]
    endpoint = provider(fake, proxy_command="my-proxy %h", address="iap").prepare(Progress())
    assert (endpoint.host, endpoint.proxy_command) == (NAME, "my-proxy %h")


# --- close ------------------------------------------------------------------------------


def test_stop_on_exit_stops_the_vm(fake: FakeCompute) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME)
    gce = provider(fake, stop_on_exit=True)
    gce.prepare(Progress())
    progress = Progress()
    gce.close(progress)
    assert vm.current_status() == "TERMINATED"
    assert len(fake.calls_to("stop", "POST")) == 1
    assert progress.lines == [f"stopping instance {NAME} (stop_on_exit)",
                              f"instance {NAME} stopped"]


def test_close_on_a_fresh_provider_stops_the_vm(fake: FakeCompute) -> None:
    """`down` for a runtime whose owner died builds a new provider just to close it."""
    vm = fake.add_instance(PROJECT, ZONE, NAME)
    progress = Progress()
    provider(fake, stop_on_exit=True).close(progress)
    assert vm.current_status() == "TERMINATED"
    assert progress.lines[-1] == f"instance {NAME} stopped"
    provider(fake, stop_on_exit=True).close(progress)
    assert progress.lines[-1] == f"instance {NAME} is already stopped"


def test_close_without_stop_on_exit_does_nothing(fake: FakeCompute) -> None:
    vm = fake.add_instance(PROJECT, ZONE, NAME)
    gce = provider(fake)
    gce.prepare(Progress())
    count = len(fake.calls)
    progress = Progress()
    gce.close(progress)
    assert len(fake.calls) == count and progress.lines == [] and vm.status == "RUNNING"


def test_close_after_a_failed_lookup_makes_no_call(fake: FakeCompute) -> None:
    gce = provider(fake, stop_on_exit=True)
    with pytest.raises(CloudError):
        gce.prepare(Progress())
    count = len(fake.calls)
    gce.close(Progress())
    assert len(fake.calls) == count


# --- errors ------------------------------------------------------------------------------


def test_instance_not_found(fake: FakeCompute) -> None:
    with pytest.raises(CloudError) as err:
        provider(fake).prepare(Progress())
    message = err.value.message
    assert f"instance '{NAME}' in project '{PROJECT}', zone '{ZONE}' not found" in message
    assert "\n" not in message and err.value.exit_code == ExitCode.CLOUD
    assert err.value.hint is not None and "gcloud compute instances list" in err.value.hint


def test_permission_denied_names_the_permission(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME)
    fake.inject(403, path=f"/instances/{NAME}$", permission="compute.instances.get",
                message=f"Required 'compute.instances.get' permission for "
                f"'projects/{PROJECT}/zones/{ZONE}/instances/{NAME}'")
    with pytest.raises(CloudError) as err:
        provider(fake).prepare(Progress())
    assert err.value.message == (f"permission denied while reading the instance in project "
                                 f"'{PROJECT}': missing permission 'compute.instances.get'")


def test_permission_from_the_message_when_no_details(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    fake.inject(403, path="/start$", message="Required 'compute.instances.start' permission "
                f"for 'projects/{PROJECT}/zones/{ZONE}/instances/{NAME}'")
    with pytest.raises(CloudError, match=r"missing permission 'compute\.instances\.start'"):
        provider(fake).prepare(Progress())


def test_zone_out_of_capacity(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    fake.fail_next_operation("ZONE_RESOURCE_POOL_EXHAUSTED",
                             "The zone does not have enough resources available.")
    with pytest.raises(CloudError, match="the zone has no capacity while starting") as err:
        provider(fake).prepare(Progress())
    assert err.value.hint is not None and "another zone" in err.value.hint


def test_quota_exceeded(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    fake.inject(403, path="/start$", reason="quotaExceeded",
                message="Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1.")
    with pytest.raises(CloudError, match="quota exceeded while starting the instance"):
        provider(fake).prepare(Progress())


def test_unknown_zone(fake: FakeCompute) -> None:
    fake.inject(400, path="/zones/", reason="invalid",
                message="Invalid value for field 'zone': 'us-nowhere1-z'. Unknown zone.")
    with pytest.raises(CloudError, match="zone problem while reading the instance"):
        provider(fake, zone="us-nowhere1-z").prepare(Progress())


def test_no_credentials_gives_the_gcloud_hint(tmp_path: Path) -> None:
    env = {"REMOTE_RUNTIME_COMPUTE_ENDPOINT": f"https://127.0.0.1:{closed_port()}",
           "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json"),
           "PATH": os.environ["PATH"]}
    with pytest.raises(CloudError, match="no usable Google Cloud credentials") as err:
        GceProvider(profile(), environ=env).prepare(Progress())
    assert err.value.hint is not None
    assert "gcloud auth application-default login" in err.value.hint
    with pytest.raises(CloudError, match="no usable Google Cloud credentials"):
        live_status(profile(), env)


def test_service_account_file_gives_project_and_account(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "sa-project", "private_key_id": "1",
        "private_key": pem, "client_email": "runner@sa-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": f"http://127.0.0.1:{closed_port()}/token"}))
    env = {"REMOTE_RUNTIME_COMPUTE_ENDPOINT": f"https://127.0.0.1:{closed_port()}",
           "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    api = connect(profile(project=None), env)
    assert api.project == "sa-project" and not api.creds.anonymous
    assert account_email(api.creds) == "runner@sa-project.iam.gserviceaccount.com"
    assert connect(profile(project=None), {**env, "GOOGLE_CLOUD_PROJECT": "env-proj"}
                   ).project == "env-proj"
    # Nothing listens there: a clear line, not a traceback, and only loopback was touched.
    with pytest.raises(CloudError, match="cannot reach the Compute API"):
        live_status(profile(), env)


def test_emulator_needs_a_project(fake: FakeCompute) -> None:
    with pytest.raises(CloudError, match="no Google Cloud project") as err:
        GceProvider(profile(project=None), environ=environ(fake)).prepare(Progress())
    assert err.value.hint is not None and "gce.project" in err.value.hint


def test_plain_http_to_a_remote_host_is_refused() -> None:
    env = {"REMOTE_RUNTIME_COMPUTE_ENDPOINT": "http://compute.example.com"}
    with pytest.raises(CloudError, match="refusing to send Google credentials over plain http"):
        live_status(profile(), env)


def test_missing_google_libraries(fake: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hide the installed library: `from google.cloud import compute_v1` now fails.
    monkeypatch.delattr(google.cloud, "compute_v1", raising=False)
    monkeypatch.setitem(sys.modules, "google.cloud.compute_v1", None)
    with pytest.raises(CloudError) as err:
        provider(fake).prepare(Progress())
    assert err.value.hint is not None
    assert "pip install --force-reinstall 'remote-runtime[gce]'" in err.value.hint


def test_library_free_import() -> None:
    """The rest of the tool (and gce's own modules) load without Google's libraries."""
    code = ("import sys; sys.modules['google'] = None\n"
            "import remote_runtime.providers.gce, remote_runtime.profiles\n"
            "assert not any(m.startswith('google.') for m in sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- endpoint and status ----------------------------------------------------------------


def test_env_endpoint_overrides_profile_api_endpoint(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, ZONE, NAME, status="SUSPENDED")
    env = {"REMOTE_RUNTIME_COMPUTE_ENDPOINT": fake.url + "/compute/v1/"}
    assert live_status(profile(api_endpoint=f"http://127.0.0.1:{closed_port()}"),
                       env) == "SUSPENDED"
    # Without the variable, the profile's endpoint is used.
    assert live_status(profile(api_endpoint=fake.url), {}) == "SUSPENDED"


def test_live_status_errors(fake: FakeCompute) -> None:
    with pytest.raises(CloudError, match=f"instance '{NAME}' in project '{PROJECT}'"):
        live_status(profile(), environ(fake))


def test_fake_instance_json_roundtrip() -> None:
    """The fake's instance looks like the API's to the real client's parser."""
    data = Instance(PROJECT, ZONE, NAME, id=123).to_json()
    parsed = compute_v1.Instance.from_json(json.dumps(data), ignore_unknown_fields=False)
    assert parsed.network_interfaces[0].access_configs[0].nat_i_p == "203.0.113.10"


# --- end to end: `up` on a GCE profile whose "VM" is the sandbox sshd ---------------------
#
# The fake API holds the instance (stopped at first), its metadata and its guest
# attributes; the instance's host key is the sandbox sshd's, the profile's proxy_command
# reaches that sshd in its network namespace, and `GuestAgent` (support.gce) plays the VM's
# guest agent: it copies the user's keys from metadata into sshd's authorized_keys, a moment
# later, as a real VM does (so the provider's auth retry is exercised too).

def e2e_instance(fake: FakeCompute, box: Sandbox, host_key: tuple[str, str] | None = None
                 ) -> Instance:
    assert box.sshd is not None
    kind, blob = host_key or tuple(box.sshd.host_key_line.split())
    return fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED", nat_ip=None, metadata={
        "block-project-ssh-keys": "TRUE", "enable-guest-attributes": "TRUE"},
        host_keys={kind: blob})


def e2e_profile(box: Sandbox, source: Path) -> Profile:
    assert box.sshd is not None and box.sshd.proxy_command
    body = box.profile()
    gce = GCESettings(zone=ZONE, instance=NAME, project=PROJECT, user=box.sshd.user,
                      proxy_command=box.sshd.proxy_command, stop_on_exit=True)
    return Profile(name="gce-e2e", source=source, gce=gce,
                   jupyter=JupyterSettings(**{k: v for k, v in body["jupyter"].items()
                                              if k != "port"}))


@pytest.mark.integration
def test_up_on_a_gce_profile_reaches_a_healthy_jupyter(
        fake: FakeCompute, sandbox: Sandbox, home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    vm = e2e_instance(fake, sandbox)
    monkeypatch.setenv("REMOTE_RUNTIME_COMPUTE_ENDPOINT", fake.url)
    lines: list[str] = []
    with GuestAgent(fake, sandbox):
        runtime = Runtime(e2e_profile(sandbox, tmp_path / "profiles.yaml"), UpOptions(timeout=600),
                          progress=lines.append)
        try:
            info = runtime.start()
            assert info.health.ok, info.health.to_dict()
            assert info.target == f"gce {PROJECT}/{ZONE}/{NAME}"
            with urllib.request.urlopen(  # the tunnel answers as Colab needs
                    f"http://localhost:{info.port}/api/kernelspecs?token={info.token}",
                    timeout=30) as response:
                assert response.status == 200
            assert vm.current_status() == "RUNNING"
        finally:
            done = runtime.close()
    assert "instance dl-vm is TERMINATED: starting it" in lines
    assert f"{sandbox.sshd.user}:" in vm.metadata.items["ssh-keys"]  # type: ignore[union-attr]
    # The host key from guest attributes was accepted and recorded under gcloud's alias.
    known = (home / ".ssh" / "google_compute_known_hosts").read_text()
    assert f"compute.{vm.id} {sandbox.sshd.host_key_line}" in known  # type: ignore[union-attr]
    assert done[-2:] == [f"stopping instance {NAME} (stop_on_exit)", f"instance {NAME} stopped"]
    assert vm.current_status() == "TERMINATED"


@pytest.mark.integration
def test_up_refuses_a_host_key_other_than_the_published_one(
        fake: FakeCompute, sandbox: Sandbox, home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    e2e_instance(fake, sandbox, host_key=("ssh-ed25519", ED25519))
    monkeypatch.setenv("REMOTE_RUNTIME_COMPUTE_ENDPOINT", fake.url)
    with GuestAgent(fake, sandbox, delay=0.0):
        runtime = Runtime(e2e_profile(sandbox, tmp_path / "profiles.yaml"), UpOptions(timeout=60))
        try:
            with pytest.raises(HostKeyError, match="guest attributes"):
                runtime.start()
        finally:
            done = runtime.close()
    assert not (home / ".ssh" / "google_compute_known_hosts").exists()
    assert done[-1] == f"instance {NAME} stopped"  # a failed up still honours stop_on_exit


@pytest.mark.integration
def test_ctrl_c_tears_down_and_stops_the_instance(
        fake: FakeCompute, sandbox: Sandbox, home: Path, tmp_path: Path) -> None:
    vm = e2e_instance(fake, sandbox)
    profile_ = e2e_profile(sandbox, tmp_path / "profiles.yaml")
    assert profile_.gce is not None
    jupyter = sandbox.profile()["jupyter"]
    del jupyter["port"]
    (tmp_path / "profiles.yaml").write_text(to_yaml({"profiles": {"gce-e2e": {
        "gce": {"project": PROJECT, "zone": ZONE, "instance": NAME,
                "user": profile_.gce.user, "proxy_command": profile_.gce.proxy_command,
                "stop_on_exit": True},
        "jupyter": jupyter}}}))
    env = {**os.environ, "REMOTE_RUNTIME_COMPUTE_ENDPOINT": fake.url, "COLUMNS": "250",
           "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-c", "import sys; from remote_runtime.cli import main; "
            "sys.exit(main())", "up", "gce-e2e", "--profiles", str(tmp_path / "profiles.yaml")]
    with GuestAgent(fake, sandbox):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            stdout: list[str] = []
            reader = threading.Thread(target=lambda: stdout.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                                      daemon=True)
            reader.start()
            deadline = time.monotonic() + 600
            while not any("is up" in line for line in stdout):
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "up did not come up in time"
                time.sleep(0.2)
            assert vm.current_status() == "RUNNING"
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert f"instance {NAME} stopped" in stderr, stderr
    assert vm.current_status() == "TERMINATED"


def test_teardown_during_a_vm_start_cancels_the_start_then_stops_the_vm(
        fake: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    """`down` reaches a supervisor while its VM still boots: close() stops start() at its
    next poll, waits for it, and only then tears down (stop_on_exit stops the VM). Before,
    teardown ran beside a start that went on connecting afterwards."""
    fake.boot_seconds = 120  # a VM that takes its time to boot
    vm = fake.add_instance(PROJECT, ZONE, NAME, status="TERMINATED")
    monkeypatch.setenv("REMOTE_RUNTIME_COMPUTE_ENDPOINT", fake.url)
    lines: list[str] = []
    runtime = Runtime(profile(stop_on_exit=True), UpOptions(timeout=600), progress=lines.append)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            runtime.start()
        except BaseException as exc:  # looked at below
            errors.append(exc)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not any("waiting for it" in line for line in lines):
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    began = time.monotonic()
    done = runtime.close()
    assert time.monotonic() - began < 15
    assert not thread.is_alive(), "close() returned while start() still ran"
    assert len(errors) == 1, errors
    assert "teardown began" in str(errors[0]) or "before the runtime was up" in str(errors[0])
    assert done[-2:] == [f"stopping instance {NAME} (stop_on_exit)", f"instance {NAME} stopped"]
    assert vm.current_status() == "TERMINATED"
    calls = len(fake.calls)
    time.sleep(1.5)  # nothing of the start goes on after teardown
    assert len(fake.calls) == calls
