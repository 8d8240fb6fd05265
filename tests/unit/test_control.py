"""list, status and down for the runtimes of a `{run}` profile, and for a Spot VM that was
preempted, from state records alone (no sandbox; the Compute API is a closed port)."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from support.net import free_port

from remote_runtime import control, profiles, state, teardown
from remote_runtime.errors import NotRunningError, PreemptedError, UsageError

PROFILES = """
profiles:
  lab:
    ssh: {host: lab.example.com}
  ci:
    gce:
      project: p
      zone: us-central1-a
      instance: ci-{run}
      create:
        machine_type: n2-standard-4
        image: {family: common-cpu, project: deeplearning-platform-release}
"""


@pytest.fixture
def loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> profiles.ProfileSet:
    # Anything that asks the Compute API gets a refused connection on loopback at once.
    monkeypatch.setenv("REMOTE_RUNTIME_COMPUTE_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    path = tmp_path / "profiles.yaml"
    path.write_text(textwrap.dedent(PROFILES))
    return profiles.load(path)


def record(name: str, **changes: object) -> state.Record:
    made = state.Record(name=name, kind="gce", pid=os.getpid(), port=free_port(), token="t" * 48,
                        run_id=f"{name}-0123456789ab", target=f"p/us-central1-a/{name}",
                        profile="ci", since=time.time())
    for key, value in changes.items():
        setattr(made, key, value)
    state.write(made)
    time.sleep(0.01)  # distinct `since`, in order
    return made


def test_list_has_a_row_per_runtime_of_a_run_profile(loaded: profiles.ProfileSet) -> None:
    rows, problems = control.list_runtimes(loaded, check_health=False)
    assert [(r.profile.name, r.state) for r in rows] == [("lab", "down"), ("ci", "down")]
    record("ci-aaaaaa")
    record("ci-bbbbbb", phase="preempted", ended="its Spot VM was preempted at T")
    record("ci-zzzz", profile="")  # no profile makes that name
    rows, problems = control.list_runtimes(loaded, check_health=False)
    assert [(r.profile.name, r.state) for r in rows] == [
        ("lab", "down"), ("ci-aaaaaa", "up"), ("ci-bbbbbb", "preempted")]
    data = rows[2].to_dict()
    assert data["profile"] == "ci" and data["ended"] == "its Spot VM was preempted at T"
    assert rows[1].profile.gce is not None and rows[1].profile.gce.instance == "ci-aaaaaa"
    assert problems == [f"runtime 'ci-zzzz' is recorded but its profile is not in "
                        f"{loaded.path}"]


def test_status_names_one_runtime(loaded: profiles.ProfileSet) -> None:
    with pytest.raises(UsageError, match=r"name one of its runtimes \(up: none\)"):
        control.status(loaded, "ci")
    record("ci-aaaaaa")
    record("ci-cccccc")
    with pytest.raises(UsageError, match=r"\(up: ci-aaaaaa, ci-cccccc\)"):
        control.status(loaded, "ci")
    record("ci-bbbbbb", phase="preempted", ended="its Spot VM was preempted at T")
    with pytest.raises(PreemptedError) as err:
        control.status(loaded, "ci-bbbbbb")
    assert err.value.message == "runtime 'ci-bbbbbb': its Spot VM was preempted at T"
    assert err.value.hint == "clean up with 'remote-runtime down ci-bbbbbb'"


def test_down_of_a_preempted_runtime_removes_its_record(loaded: profiles.ProfileSet) -> None:
    with pytest.raises(NotRunningError, match="no runtime of profile 'ci' is up"):
        teardown.down_named(loaded, "ci", lambda _: None)
    record("ci-bbbbbb", phase="preempted", ended="its Spot VM was preempted at T")
    results = teardown.down_named(loaded, "ci", lambda _: None)
    lines = results["ci-bbbbbb"]
    assert lines[0] == "its Spot VM was preempted at T"
    assert lines[1].startswith("could not delete the VM: cannot reach the Compute API")
    assert lines[-1] == "removed the state record"
    assert state.get("ci-bbbbbb") is None
