"""VMs created from a profile (the real google-cloud-compute client against the fake Compute
API): the resource inserted, its failures as one line, what a teardown deletes, Ctrl-C and
aborts during creation, preemption and the VMs a machine left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.cli import assert_one_error_line, cli_argv, cli_env
from support.fake_compute import FakeCompute
from support.gce import GUEST_KEY, PROJECT, ZONE, gpu_create
from support.remote import write_profiles

from remote_runtime import cli, profiles
from remote_runtime.errors import CloudError, ExitCode
from remote_runtime.profiles import Profile
from remote_runtime.providers.gce import leftovers, preemption
from remote_runtime.providers.gce.create import machine_label
from remote_runtime.providers.gce.provider import GceProvider


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


def load(tmp_path: Path, name: str = "ci", **gce: Any) -> Profile:
    """`name` from a profiles file (through the real loader); a {run} profile's new runtime."""
    body = {"gce": {"project": PROJECT, "zone": ZONE, "instance": "ci-{run}",
                    "create": gpu_create(), **gce}}
    path = write_profiles(tmp_path / "profiles.yaml", {name: body})
    return profiles.load(path).to_start(name)


def provider(profile: Profile) -> GceProvider:
    gce = GceProvider(profile)
    gce.poll_interval = 0.05
    return gce


def created(fake: FakeCompute) -> list[dict[str, Any]]:
    return [c.body or {} for c in fake.calls
            if c.method == "POST" and c.path.endswith(f"/zones/{ZONE}/instances")]


def test_a_created_vm_is_deleted_when_its_runtime_never_came_up(
        compute: FakeCompute, gce_home: Path, tmp_path: Path) -> None:
    compute.host_keys_delay = 0.6  # the guest agent publishes them after the boot
    profile = load(tmp_path)
    assert profile.gce is not None
    name = profile.gce.instance
    gce, lines = provider(profile), Lines()
    endpoint = gce.prepare(lines)
    assert endpoint.trusted_host_keys == (("ssh-ed25519", GUEST_KEY),)
    assert endpoint.extra["gpus"] == "1"
    assert endpoint.host == "203.0.113.10"  # external_ip defaults to true, as gcloud's
    assert "waiting for the VM's SSH host keys (guest attributes)" in lines
    (body,) = created(compute)
    labels = body["labels"]
    assert labels["remote-runtime-host"] == machine_label()
    token = labels["remote-runtime-run"]
    assert compute.live(PROJECT, ZONE, name).labels["remote-runtime-run"] == token  # type: ignore[union-attr]
    # Nothing said the runtime came up (runtime_up): close() deletes what it created.
    closing = Lines()
    gce.close(closing)
    assert closing == [f"deleting instance {name} and its boot disk (created for a runtime "
                       "that did not come up)", f"instance {name} deleted"]
    assert compute.live(PROJECT, ZONE, name) is None


def test_a_persistent_created_vm_stays_after_a_good_run(
        compute: FakeCompute, gce_home: Path, tmp_path: Path) -> None:
    """create without delete_on_exit: made once, kept (and reused by the next up)."""
    profile = load(tmp_path, "dev", instance="dev-box",
                   create={"machine_type": "n2-standard-4", "image": {
                       "name": "common-cu124-v20240901-ubuntu-2204-py310",
                       "project": "deeplearning-platform-release"},
                       "external_ip": False, "service_account": "none",
                       "network": "lab", "subnetwork": "lab-sub",
                       "metadata": {"startup-script": "echo hi"}}, address="internal")
    gce = provider(profile)
    gce.prepare(Lines())
    gce.runtime_up()
    closing = Lines()
    gce.close(closing)
    assert closing == [] and compute.live(PROJECT, ZONE, "dev-box") is not None
    (body,) = created(compute)
    assert "guestAccelerators" not in body and body["scheduling"] == {}
    assert "serviceAccounts" not in body
    assert body["networkInterfaces"] == [{
        "network": f"projects/{PROJECT}/global/networks/lab",
        "subnetwork": "regions/us-central1/subnetworks/lab-sub"}]
    assert "diskSizeGb" not in body["disks"][0]["initializeParams"]  # the image's size
    metadata = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert "install-nvidia-driver" not in metadata and metadata["startup-script"] == "echo hi"
    provider(profile).prepare(Lines())  # the next up finds it: no second insert
    assert len(created(compute)) == 1


@pytest.mark.parametrize(("setup", "expected"), [
    (lambda fake: fake.quota.update(PREEMPTIBLE_NVIDIA_L4_GPUS=0.0),
     "error: quota exceeded while creating the instance in project 'proj-1': Quota "
     "'PREEMPTIBLE_NVIDIA_L4_GPUS' exceeded.  Limit: 0.0 in region us-central1."),
    (lambda fake: fake.stockout.update({ZONE: "spot"}),
     f"error: no Spot capacity for g2-standard-8 with 1 x nvidia-l4 in zone {ZONE} right now"),
    (lambda fake: fake.stockout.update({ZONE: "all"}),
     f"error: zone {ZONE} has no capacity for n1-standard-4 right now"),
    (lambda fake: fake.images.clear(),
     "error: image family 'common-cu124-ubuntu-2204' in project "
     "'deeplearning-platform-release' not found"),
], ids=["quota", "no-spot-capacity", "no-capacity", "no-image-family"])
def test_creation_failures_are_one_line_exit_8(
        compute: FakeCompute, gce_home: Path, tmp_path: Path, setup: Any, expected: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    setup(compute)
    create = gpu_create()
    if "has no capacity" in expected:  # an on-demand VM without a GPU
        create.update(machine_type="n1-standard-4", spot=False)
        del create["accelerator"]
    path = write_profiles(tmp_path / "profiles.yaml", {"ci": {"gce": {
        "project": PROJECT, "zone": ZONE, "instance": "ci-{run}", "create": create}}})
    # In process (as the unit tier runs the CLI): a new interpreter per case costs seconds.
    status = cli.main(["up", "ci", "--profiles", str(path)])
    result = subprocess.CompletedProcess([], status, *capsys.readouterr())
    line = assert_one_error_line(result, ExitCode.CLOUD)
    assert line == expected
    assert not [i for i in compute.instances.values() if not i.gone]  # nothing left behind


def test_a_spot_vm_preempted_while_starting(compute: FakeCompute, gce_home: Path,
                                            tmp_path: Path) -> None:
    profile = load(tmp_path)
    assert profile.gce is not None
    name = profile.gce.instance

    def taken_back(vm: Any) -> None:  # Compute Engine takes it back while it boots
        threading.Timer(0.15, compute.preempt, args=(PROJECT, ZONE, vm.name)).start()

    compute.on_insert = taken_back
    gce = provider(profile)
    with pytest.raises(CloudError) as err:
        gce.prepare(Lines())
    assert err.value.message == (f"the Spot VM {name} was preempted while starting: no Spot "
                                 f"capacity for g2-standard-8 with 1 x nvidia-l4 in zone {ZONE}"
                                 " right now")
    closing = Lines()
    gce.close(closing)
    assert closing == [f"instance {name} is already gone"]  # DELETE was its own action


def test_abort_during_creation_deletes_the_vm(compute: FakeCompute, gce_home: Path,
                                              tmp_path: Path) -> None:
    """A supervisor told to stop (SIGTERM) while its VM is being created: abort() from its
    main thread, close() right after, the creating thread still inside insert."""
    compute.operation_seconds = 1.5
    profile = load(tmp_path)
    assert profile.gce is not None
    gce = provider(profile)
    failure: list[BaseException] = []

    def start() -> None:
        try:
            gce.prepare(Lines())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    deadline = time.monotonic() + 30
    while not created(compute):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    gce.abort()
    closing = Lines()
    gce.close(closing)
    thread.join(timeout=30)
    assert isinstance(failure[0], CloudError) and "stopped while preparing" in str(failure[0])
    assert compute.live(PROJECT, ZONE, profile.gce.instance) is None
    assert any("deleting instance" in line for line in closing)


def test_delete_on_exit_spares_a_vm_it_did_not_create(compute: FakeCompute, gce_home: Path,
                                                      tmp_path: Path) -> None:
    compute.add_instance(PROJECT, ZONE, "shared-vm")
    profile = load(tmp_path, "shared", instance="shared-vm", delete_on_exit=True)
    gce = provider(profile)
    gce.prepare(Lines())
    gce.runtime_up()
    closing = Lines()
    gce.close(closing)
    assert closing == ["not deleting instance shared-vm: it was not created by remote-runtime"]
    assert compute.live(PROJECT, ZONE, "shared-vm") is not None


def test_preemption_and_leftovers(compute: FakeCompute, gce_home: Path, tmp_path: Path) -> None:
    profile = load(tmp_path)
    assert profile.gce is not None
    name = profile.gce.instance
    gce = provider(profile)
    gce.prepare(Lines())
    gce.runtime_up()
    # Another machine's VM of the same profile is not this machine's to delete.
    compute.add_instance(PROJECT, ZONE, "ci-other", labels={
        "created-by": "remote-runtime", "remote-runtime-profile": "ci",
        "remote-runtime-host": "someone-else"})
    template = profiles.load(tmp_path / "profiles.yaml").get("ci")
    assert leftovers(template) == [name]
    assert preemption(profile) is None and gce.preempted() is None
    operation = compute.preempt(PROJECT, ZONE, name)
    assert preemption(profile) == operation.to_json()["insertTime"]
    assert gce.preempted() == operation.to_json()["insertTime"]
    time.sleep(0.3)  # its termination action (DELETE) removed it
    assert compute.live(PROJECT, ZONE, name) is None and leftovers(template) == []
    assert preemption(profile) == operation.to_json()["insertTime"]


def test_ctrl_c_during_creation_deletes_the_vm(compute: FakeCompute, gce_home: Path,
                                               tmp_path: Path) -> None:
    compute.operation_seconds = 3.0  # the insert is under way when Ctrl-C comes
    path = write_profiles(tmp_path / "profiles.yaml", {"ci": {"gce": {
        "project": PROJECT, "zone": ZONE, "instance": "ci-{run}", "create": gpu_create()}}})
    proc = subprocess.Popen(cli_argv("up", "ci", "--profiles", str(path)), env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not created(compute):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    (body,) = created(compute)
    assert f"deleting instance {body['name']} and its boot disk (created for a runtime that " \
        "did not come up)" in stderr
    assert compute.live(PROJECT, ZONE, body["name"]) is None
    assert "Traceback" not in stderr
