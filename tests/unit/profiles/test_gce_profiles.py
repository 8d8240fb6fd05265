"""The gce keys that make VMs: the `create` section (nested, every problem with its line),
`{run}` templates and their runtimes, delete_on_exit and idle_stop_minutes."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from remote_runtime import profiles
from remote_runtime.errors import ProfileError
from remote_runtime.profiles.gce import Accelerator, CreateSettings, Image


def write(tmp_path: Path, gce: str, name: str = "ci") -> Path:
    path = tmp_path / "profiles.yaml"
    body = textwrap.indent(textwrap.dedent(gce).strip("\n"), " " * 6)
    path.write_text(f"profiles:\n  {name}:\n    gce:\n{body}\n")
    return path


ISSUE_EXAMPLE = """
project: my-project
zone: us-central1-a
instance: ci-gpu-{run}
create:
  machine_type: g2-standard-8
  accelerator: {type: nvidia-l4, count: 1}
  image: {family: common-cu124-ubuntu-2204, project: deeplearning-platform-release}
  boot_disk_gb: 100
  spot: true
  max_run_minutes: 120
  labels: {team: ml}
delete_on_exit: true
idle_stop_minutes: 30
"""


def test_the_issue_example_loads(tmp_path: Path) -> None:
    loaded = profiles.load(write(tmp_path, ISSUE_EXAMPLE, "ci-gpu"))
    template = loaded.get("ci-gpu")
    assert template.gce is not None and template.run_template
    assert template.gce.create == CreateSettings(
        machine_type="g2-standard-8", accelerator=Accelerator("nvidia-l4", 1),
        image=Image(project="deeplearning-platform-release", family="common-cu124-ubuntu-2204"),
        boot_disk_gb=100, spot=True, max_run_minutes=120, labels={"team": "ml"})
    assert template.gce.delete_on_exit and template.gce.idle_stop_minutes == 30.0
    assert template.idle_stop_seconds == 1800.0


def test_each_up_of_a_template_is_a_runtime_of_its_own(tmp_path: Path) -> None:
    loaded = profiles.load(write(tmp_path, ISSUE_EXAMPLE + "\n", "ci-gpu"))
    first, second = loaded.to_start("ci-gpu"), loaded.to_start("ci-gpu")
    assert first.name != second.name
    for runtime in (first, second):
        assert runtime.gce is not None
        suffix = runtime.name.removeprefix("ci-gpu-")
        assert re.fullmatch(r"[a-z][a-z0-9]{5}", suffix)
        assert runtime.gce.instance == f"ci-gpu-{suffix}" and runtime.base == "ci-gpu"
        assert runtime.profile_name == "ci-gpu" and not runtime.run_template
        assert runtime.gce.delete_on_exit and not runtime.jupyter.port_explicit
        assert loaded.get(runtime.name) == runtime  # `down NAME`, `status NAME` find it
    with pytest.raises(ProfileError, match="no profile named 'ci-gpu-TOOLONG'"):
        loaded.get("ci-gpu-TOOLONG")


def test_a_run_template_defaults_to_delete_on_exit(tmp_path: Path) -> None:
    text = ISSUE_EXAMPLE.replace("delete_on_exit: true\n", "")
    runtime = profiles.load(write(tmp_path, text)).to_start("ci")
    assert runtime.gce is not None and runtime.gce.delete_on_exit


@pytest.mark.parametrize(("change", "expected"), [
    (("delete_on_exit: true", "delete_on_exit: false"),
     "key 'gce.delete_on_exit': an instance named with {run} is created per run and must "
     "be deleted at its end"),
    (("instance: ci-gpu-{run}", "instance: CI-{run}"),
     "key 'gce.instance': with {run} replaced by a 6-character suffix, must be a Compute "
     "Engine instance name"),
    (("instance: ci-gpu-{run}", "instance: a-{run}-{run}"), "key 'gce.instance': may hold "
     "{run} once"),
    (("delete_on_exit: true", "delete_on_exit: true\nstop_on_exit: true"),
     "key 'gce.stop_on_exit': cannot be set together with delete_on_exit"),
    (("idle_stop_minutes: 30", "idle_stop_minutes: 0"),
     "key 'gce.idle_stop_minutes': must be a number of minutes >= 0.1, not 0"),
    (("count: 1", "count: 0"),
     "line 9: profile 'ci' key 'gce.create.accelerator.count': must be a whole number from 1 "
     "to 16, not 0"),
    (("{type: nvidia-l4, count: 1}", "{count: 1}"),
     "line 9: profile 'ci' key 'gce.create.accelerator.type': is required"),
    (("family: common-cu124-ubuntu-2204, ", ""),
     "key 'gce.create.image': give exactly one of 'family'"),
    (("labels: {team: ml}", "labels: {created-by: me}"),
     "key 'gce.create.labels': label key 'created-by' is set by remote-runtime itself"),
    (("labels: {team: ml}", "labels: {team: ML}"),
     "key 'gce.create.labels': 'team': label values use lowercase letters"),
    (("boot_disk_gb: 100", "boot_disk_gb: 5"),
     "key 'gce.create.boot_disk_gb': must be a whole number of GB from 10 to 65536, not 5"),
    (("spot: true", "spott: true"), "key 'gce.create.spott': unknown key (did you mean 'spot'?)"),
    (("machine_type: g2-standard-8", "machine_type: G2"),
     "key 'gce.create.machine_type': must be a Compute Engine machine type name"),
])
def test_problems_name_the_nested_key(tmp_path: Path, change: tuple[str, str],
                                      expected: str) -> None:
    text = ISSUE_EXAMPLE.replace(*change)
    assert text != ISSUE_EXAMPLE
    _, problems = profiles.validate(write(tmp_path, text))
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_run_template_needs_create(tmp_path: Path) -> None:
    _, problems = profiles.validate(write(tmp_path, """
        zone: us-central1-a
        instance: ci-{run}
    """))
    assert problems == [f"{tmp_path / 'profiles.yaml'} line 5: profile 'ci' key 'gce.instance': "
                        "an instance named with {run} is created per run: the profile needs "
                        "a 'create' section"]


def test_an_ordinary_profile_is_unchanged(tmp_path: Path) -> None:
    loaded = profiles.load(write(tmp_path, """
        zone: us-central1-a
        instance: My_Old_VM
    """, "vm"))
    vm = loaded.to_start("vm")
    assert vm == loaded.get("vm") and vm.name == "vm" and vm.base == ""
    assert vm.gce is not None and vm.gce.create is None and not vm.gce.delete_on_exit
    assert vm.idle_stop_seconds is None
