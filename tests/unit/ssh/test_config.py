"""`ssh.config.resolve`: an endpoint merged with ~/.ssh/config (the test's own HOME)."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from remote_runtime.errors import SSHError
from remote_runtime.ssh import Endpoint
from remote_runtime.ssh.config import resolve

CONFIG = """\
Host lab
    HostName lab.example.com
    Port 2222
    User alice
    IdentityFile ~/.ssh/lab_key
    UserKnownHostsFile ~/.ssh/lab_known_hosts

Host via-proxy
    HostName 10.0.0.5
    ProxyCommand nc -X connect -x proxy:3128 %h %p # %r

Host jumpy
    ProxyJump bastion
"""


@pytest.fixture
def ssh_config(isolated: object) -> Path:
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    path = ssh_dir / "config"
    path.write_text(CONFIG)
    return path


def test_config_values_apply_to_a_host_alias(ssh_config: Path) -> None:
    target = resolve(Endpoint(host="lab"))
    home = Path.home()
    assert (target.hostname, target.port, target.user) == ("lab.example.com", 2222, "alice")
    assert target.identity_files == (home / ".ssh" / "lab_key",)
    assert target.known_hosts == (home / ".ssh" / "lab_known_hosts",)
    assert target.host_key_name == "[lab.example.com]:2222"
    assert target.proxy_command is None and target.proxy_jump is None


def test_profile_values_win_over_the_config(ssh_config: Path, tmp_path: Path) -> None:
    key, known = tmp_path / "key", tmp_path / "known"
    target = resolve(Endpoint(host="lab", port=22, user="bob", identity_file=key,
                              known_hosts=known, host_key_alias="lab-alias"))
    assert (target.port, target.user, target.identity_files) == (22, "bob", (key,))
    # The profile's file first (new keys are recorded there), then the config's and the
    # user's default.
    ssh_dir = Path.home() / ".ssh"
    assert target.known_hosts == (known, ssh_dir / "lab_known_hosts", ssh_dir / "known_hosts")
    assert target.host_key_name == "lab-alias"


def test_defaults_without_a_config(isolated: object) -> None:
    target = resolve(Endpoint(host="plain.example.com"))
    ssh_dir = Path.home() / ".ssh"
    assert (target.hostname, target.port, target.user) == (
        "plain.example.com", 22, getpass.getuser())
    assert target.identity_files == tuple(
        ssh_dir / name for name in ("id_ed25519", "id_ecdsa", "id_rsa"))
    assert target.host_key_name == "plain.example.com"


def test_proxy_command_tokens_are_expanded(ssh_config: Path) -> None:
    target = resolve(Endpoint(host="via-proxy", user="carol"))
    assert target.proxy_command is not None
    assert target.proxy_command.startswith("nc -X connect -x proxy:3128 10.0.0.5 22")


def test_proxy_jump_from_the_config(ssh_config: Path) -> None:
    assert resolve(Endpoint(host="jumpy")).proxy_jump == "bastion"
    assert resolve(Endpoint(host="jumpy", proxy_command="nc %h %p")).proxy_jump is None


def test_an_unreadable_config_is_one_ssh_error(isolated: object) -> None:
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "config").write_text("Host x\n  Port\n")
    with pytest.raises(SSHError, match="cannot parse SSH config"):
        resolve(Endpoint(host="x"))
