"""`remote-runtime profiles show NAME [--json]`: the effective connection, resolved as
OpenSSH resolves it (through the test's `openssh` client), without connecting."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import assert_one_error_line, run_cli
from support.remote import write_profiles

CONFIG = """\
Host lab
  HostName lab.example.com
  User alice
  ProxyJump ops@bastion:2200,jump2
  IdentityAgent ~/.1password/agent.sock
  IdentityFile ~/.ssh/lab_config_key
Host bastion
  HostKeyAlias bastion-key
Host jump2
  UserKnownHostsFile none
"""


def setup(home: Path, tmp_path: Path) -> Path:
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(CONFIG)
    return write_profiles(tmp_path / "profiles.yaml", {
        "lab": {"ssh": {"host": "lab", "identity_file": "~/.ssh/lab_key",
                        "known_hosts": str(tmp_path / "known_hosts")}},
        "vm": {"gce": {"zone": "us-central1-a", "instance": "my-vm", "project": "p"}},
    })


def test_json_shows_the_route_hop_by_hop(openssh: Path, isolated: object, tmp_path: Path) -> None:
    home = Path.home()
    profiles = setup(home, tmp_path)
    result = run_cli("profiles", "show", "lab", "--json", "--profiles", str(profiles))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"].startswith("ssh -G")
    route = data["route"]
    assert [(h["name"], h["hostname"], h["port"], h["user"]) for h in route] == [
        ("bastion", "bastion", 2200, "ops"), ("jump2", "jump2", 22, "root"),
        ("lab", "lab.example.com", 22, "alice")]
    assert [h["via"] for h in route] == ["direct", "through bastion", "through jump2"]
    assert route[0]["host_key_name"] == "bastion-key"
    known = str(tmp_path / "known_hosts")
    assert route[2]["records_to"] == known and route[2]["known_hosts"][0] == known
    # The profile's file applies to every hop; jump2's own config says none.
    assert route[1]["known_hosts"] == [known]
    assert [f["path"] for f in data["identity_files"]] == [
        str(home / ".ssh" / "lab_key"), str(home / ".ssh" / "lab_config_key")]
    assert data["identity_files"][0]["from_profile"] is True
    assert data["agent"] == str(home / ".1password" / "agent.sock")


def test_text_names_every_part(openssh: Path, isolated: object, tmp_path: Path) -> None:
    profiles = setup(Path.home(), tmp_path)
    result = run_cli("profiles", "show", "lab", "--profiles", str(profiles))
    assert result.returncode == 0, result.stderr
    for needle in ("hostname            lab.example.com", "1. ops@bastion:2200 (bastion), direct",
                   "host key checked as bastion-key", "a new host key is recorded in",
                   "agent", "identity file"):
        assert needle in result.stdout, result.stdout


def test_a_gce_profile_says_what_comes_from_the_api(isolated: object, tmp_path: Path) -> None:
    profiles = setup(Path.home(), tmp_path)
    result = run_cli("profiles", "show", "vm", "--json", "--profiles", str(profiles))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["route"] == [] and "Compute API" in data["notes"][0]


def test_bad_input_is_one_line(isolated: object, tmp_path: Path) -> None:
    profiles = setup(Path.home(), tmp_path)
    assert_one_error_line(run_cli("profiles", "show", "nope", "--profiles", str(profiles)), 3,
                          "nope")
    hostile = write_profiles(tmp_path / "bad.yaml", {"x": {"ssh": {"host": "a$(id)b"}}})
    assert_one_error_line(run_cli("profiles", "show", "x", "--profiles", str(hostile)), 4,
                          "OpenSSH refuses")
