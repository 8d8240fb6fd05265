"""`remote-runtime doctor` on the command line, for what needs no remote: a line per
check, its fix under it, the verdict, the exit code of the first failing stage, `--json`;
the profile stage's failures; a URL that is not a runtime's."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from support.remote import write_profiles

from remote_runtime import cli
from remote_runtime.cli import doctor_view
from remote_runtime.cli.render import console
from remote_runtime.doctor import FAILED, Check, Report

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    status = cli.main(["doctor", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def check_lines(out: str) -> list[str]:
    return [line for line in out.splitlines()
            if line.split(None, 1)[:1] in (["ok"], ["warning"], ["FAILED"], ["skipped"])]


def test_only_this_machine_without_a_profile(isolated: object, capsys: Capture) -> None:
    status, out, err = run(capsys, "--port", "1")  # a port only root could use: never ours
    lines = check_lines(out)
    assert lines[0].split() [:2] == ["skipped", "profile"]
    assert any(" local " in f" {line} " for line in lines)
    assert "browser" in out and "Traceback" not in out + err
    assert status in (0, 5, 14)  # whatever this machine's port 1 and browsers say


def test_an_unknown_profile_is_the_profile_stage(isolated: object, tmp_path: Path,
                                                 capsys: Capture) -> None:
    profiles = write_profiles(tmp_path / "profiles.yaml", {"lab": {"ssh": {"host": "lab"}}})
    status, out, _ = run(capsys, "lbb", "--profiles", str(profiles))
    assert status == 3
    [failed] = [line for line in check_lines(out) if line.startswith("FAILED")]
    assert "no profile named 'lbb'" in failed
    assert "did you mean 'lab'?" in out
    assert "first broken link: profile" in out
    # Nothing past the profile can run, but this machine is still checked.
    assert "skipped reach" in " ".join(out.split())
    assert " local " in out


def test_a_broken_profiles_file(isolated: object, tmp_path: Path, capsys: Capture) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  lab:\n    ssh:\n      hots: lab\n")
    status, out, _ = run(capsys, "lab", "--profiles", str(profiles), "--json")
    assert status == 3
    report = json.loads(out)
    [check] = report["stages"][0]["checks"]
    assert check["status"] == "failed"
    assert "key 'ssh.host': is required (and 1 more)" in check["detail"]
    assert "profiles check" in check["fix"]
    assert report["failed_stage"] == "profile" and report["exit_code"] == 3


@pytest.mark.parametrize(("text", "fix"), [
    (None, "copy profiles.example.yaml there, or pass --profiles PATH"),
    ("profiles:\n  no:\n    ssh: {host: lab}\n", "profiles check"),  # YAML's `no` is False
])
def test_a_profiles_file_that_cannot_be_read(text: str | None, fix: str, isolated: object,
                                             tmp_path: Path, capsys: Capture) -> None:
    profiles = tmp_path / "profiles.yaml"
    if text is not None:
        profiles.write_text(text)
    status, out, _ = run(capsys, "lab", "--profiles", str(profiles), "--json")
    assert status == 3
    [check] = json.loads(out)["stages"][0]["checks"]
    assert check["status"] == "failed" and str(profiles) in check["detail"]
    assert fix in check["fix"]


def test_a_missing_identity_file_fails_and_the_walk_goes_on(
        isolated: object, tmp_path: Path, capsys: Capture) -> None:
    profiles = write_profiles(tmp_path / "profiles.yaml", {"lab": {"ssh": {
        "host": "127.0.0.1", "port": 1, "identity_file": str(tmp_path / "nokey"),
        "known_hosts": str(tmp_path / "kh")}}})
    status, out, _ = run(capsys, "lab", "--profiles", str(profiles), "--no-start")
    assert status == 3
    text = " ".join(out.split())
    assert f"identity file: ssh.identity_file {tmp_path / 'nokey'} does not exist" in text
    assert "FAILED reach tcp: cannot connect to 127.0.0.1 port 1" in text


def test_a_url_that_is_not_a_runtime(isolated: object, capsys: Capture) -> None:
    status, out, _ = run(capsys, "--url", "https://example.com/?token=abc")
    assert status == 7
    assert "is not a runtime URL on this machine" in out
    assert "abc" not in out  # the token is hidden
    with socket.create_server(("127.0.0.1", 0)) as held:  # something listens: local is ok
        port = held.getsockname()[1]
        status, out, _ = run(capsys, "--url", f"http://localhost:{port}/")
    assert status == 7 and "the URL has no token, and $JUPYTER_TOKEN is not set" in out
    assert f"port {port} is held by process" in out


def test_the_view_puts_the_fix_under_a_failure(capsys: Capture) -> None:
    out = console()
    doctor_view.check_line(out, Check("local", "port", FAILED, "port 8888 is held", "stop it"))
    report = Report("lab")
    report.add(Check("local", "port", FAILED, "port 8888 is held", "stop it"))
    doctor_view.verdict(out, report)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "FAILED  local    port: port 8888 is held"
    assert lines[1].strip() == "fix: stop it" and lines[1].startswith(" " * 10)
    assert lines[2] == ("first broken link: local (this machine: the local port, loopback); "
                        "exit 5")
