"""The doctor's report: the exit code is the first failing stage's, in walking order;
the JSON groups checks by stage."""

from __future__ import annotations

from remote_runtime.doctor import FAILED, OK, SKIPPED, STAGES, WARNING, Check, Report
from remote_runtime.errors import ExitCode


def test_stages_walk_from_the_profile_to_the_browser_with_their_codes() -> None:
    assert [(s.name, int(s.exit_code)) for s in STAGES] == [
        ("profile", 3), ("cloud", 8), ("reach", 13), ("ssh", 4), ("remote", 6), ("local", 5),
        ("routes", 7), ("browser", 14)]
    assert ExitCode.UNREACHABLE == 13 and ExitCode.BROWSER == 14


def test_the_first_failing_stage_names_the_exit_code() -> None:
    told: list[Check] = []
    report = Report("lab", on_check=told.append)
    assert report.exit_code == 0 and report.failed_stage is None
    report.add(Check("profile", "profile", OK, "fine"))
    report.add(Check("browser", "firefox", FAILED, "denied", "clear it"))
    assert report.exit_code == 14
    report.add(Check("local", "port", FAILED, "held", "stop it"))
    report.add(Check("local", "loopback ipv6", WARNING, "none"))
    # The local side is walked before the browser: its code wins whatever the order added.
    assert report.exit_code == 5 and report.failed_stage is not None
    assert report.failed_stage.name == "local"
    assert [c.name for c in told] == ["profile", "firefox", "port", "loopback ipv6"]


def test_json_groups_checks_by_stage_in_walking_order() -> None:
    report = Report("lab")
    report.add(Check("reach", "tcp", FAILED, "refused", "start sshd"))
    report.add(Check("ssh", "skipped", SKIPPED, "the SSH server cannot be reached"))
    report.add(Check("profile", "profile", OK, "fine"))
    data = report.to_dict()
    assert data["exit_code"] == 13 and data["failed_stage"] == "reach" and not data["ok"]
    assert [s["name"] for s in data["stages"]] == ["profile", "reach", "ssh"]
    assert [s["status"] for s in data["stages"]] == ["ok", "failed", "skipped"]
    assert data["stages"][1]["checks"] == [
        {"name": "tcp", "status": "failed", "detail": "refused", "fix": "start sshd"}]
    assert data["stages"][0]["checks"][0]["fix"] is None
