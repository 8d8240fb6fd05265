"""`ssh.config.resolve`: an endpoint resolved as OpenSSH resolves it, into a Target.

Final values (tokens expanded once, the profile's values winning) are compared with
what a real `ssh -v` loads and runs; the rest checks the route, the known_hosts
files and the name checks OpenSSH applies before anything reaches a shell.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from support.openssh import ssh_v

from remote_runtime.errors import SSHError
from remote_runtime.ssh import Endpoint
from remote_runtime.ssh.config import agent_socket, resolve

CONFIG = """\
Host lab
    HostName lab.example.com
    Port 2222
    User alice # me
    IdentityFile ~/.ssh/lab_key
    UserKnownHostsFile ~/.ssh/lab_known_hosts

Host via-proxy
    HostName 10.0.0.5
    ProxyCommand printf '%%s ' %h %p %r %n # %r

Host tokens
    HostName tokens.example.com
    User tok
    Port 2200
    IdentityFile ~/.ssh/%h_%p_%r_%n
    IdentityFile %d/.ssh/%u-%C
    IdentityFile ${KEYDIR}/env_key
    ProxyCommand printf '%%s ' %h %p %r

Host jumpy
    ProxyJump first,ops@second:2201

Host first
    HostName first.example.com
    User firstuser

Host second
    HostName second.example.com

Host *.corp !bastion.corp
    ProxyJump bastion.corp

Host loop
    ProxyJump loop

Host agent1p
    IdentityAgent "~/.1password/agent.sock"
Host agentnone
    IdentityAgent none
Host agentvar
    IdentityAgent $MY_AGENT

Host vagrant
    UserKnownHostsFile /dev/null
    StrictHostKeyChecking no
Host nohosts
    UserKnownHostsFile none
Host hashed
    HashKnownHosts yes
    StrictHostKeyChecking accept-new
"""


def write_config(text: str = CONFIG) -> Path:
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    path = ssh_dir / "config"
    path.write_text(text)
    return path


@pytest.fixture
def ssh_config(isolated: object, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYDIR", "/keys")
    return write_config()


@pytest.fixture(params=["ssh -G", "fallback reader"])
def source(request: pytest.FixtureRequest, openssh: Path) -> str:
    """Both resolvers; the OpenSSH client on PATH sees this test's HOME either way."""
    return str(request.param)


def resolved(endpoint: Endpoint, source: str) -> object:
    target = resolve(endpoint, force_fallback=source == "fallback reader")
    assert target.source.startswith(source)
    return target


# --- final values, against a real ssh ---------------------------------------------------------


@pytest.mark.parametrize(("host", "profile"), [
    ("tokens", {}),
    ("tokens", {"port": 2300, "user": "prof"}),
    ("via-proxy", {"user": "carol"}),
    ("lab", {"identity_file": Path("/keys/profile key")}),
])
def test_tokens_are_expanded_once_from_final_values_as_ssh_does(
        ssh_config: Path, openssh: Path, source: str, host: str, profile: dict) -> None:
    endpoint = Endpoint(host=host, proxy_command=None if host != "lab" else "printf x",
                        **profile)
    target = resolve(endpoint, force_fallback=source == "fallback reader")
    options = []
    if "port" in profile:
        options.append(("Port", str(profile["port"])))
    if "user" in profile:
        options.append(("User", profile["user"]))
    if "identity_file" in profile:
        options.append(("IdentityFile", f'"{profile["identity_file"]}"'))
    if host == "lab":
        options.append(("ProxyCommand", "printf x"))
    identities, proxy = ssh_v(openssh, host, options)
    assert [str(p) for p in target.identity_files] == identities
    assert target.proxy_command == proxy


def test_config_values_apply_to_a_host_alias(ssh_config: Path, source: str) -> None:
    target = resolve(Endpoint(host="lab"), force_fallback=source == "fallback reader")
    home = Path.home()
    assert (target.hostname, target.port, target.user) == ("lab.example.com", 2222, "alice")
    assert target.identity_files == (home / ".ssh" / "lab_key",)
    assert target.known_hosts == (home / ".ssh" / "lab_known_hosts",)
    assert target.record_file == home / ".ssh" / "lab_known_hosts"
    assert target.host_key_name == "[lab.example.com]:2222"
    assert target.proxy_command is None and target.jump is None


def test_profile_values_win_over_the_config(ssh_config: Path, tmp_path: Path,
                                            source: str) -> None:
    key, known = tmp_path / "key", tmp_path / "known"
    target = resolve(Endpoint(host="lab", port=22, user="bob", identity_file=key,
                              known_hosts=known, host_key_alias="lab-alias"),
                     force_fallback=source == "fallback reader")
    assert (target.port, target.user) == (22, "bob")
    # The profile's key first (offered first), then the config's, as with `ssh -i`.
    assert target.identity_files[:2] == (key, Path.home() / ".ssh" / "lab_key")
    assert target.profile_identity == key
    # The profile's known_hosts first (new keys are recorded there), then the config's.
    assert target.known_hosts == (known, Path.home() / ".ssh" / "lab_known_hosts")
    assert target.host_key_name == "lab-alias"


def test_defaults_without_a_config(isolated: object, source: str) -> None:
    target = resolve(Endpoint(host="plain.example.com"),
                     force_fallback=source == "fallback reader")
    ssh_dir = Path.home() / ".ssh"
    assert (target.hostname, target.port, target.user) == (
        "plain.example.com", 22, getpass.getuser())
    assert target.identity_files[:2] == (ssh_dir / "id_rsa", ssh_dir / "id_ecdsa")
    assert target.known_hosts == (ssh_dir / "known_hosts", ssh_dir / "known_hosts2")
    assert target.host_key_name == "plain.example.com"
    assert target.identity_agent == "SSH_AUTH_SOCK"


# --- the route -------------------------------------------------------------------------------


def test_proxy_jump_hops_in_order_each_resolved_from_the_config(ssh_config: Path,
                                                                source: str) -> None:
    target = resolve(Endpoint(host="jumpy"), force_fallback=source == "fallback reader")
    hops = target.hops
    assert [(h.alias, h.hostname, h.port, h.user) for h in hops] == [
        ("first", "first.example.com", 22, "firstuser"),
        ("second", "second.example.com", 2201, "ops"),
        ("jumpy", "jumpy", 22, getpass.getuser()),
    ]
    assert hops[1].jump is hops[0] and hops[0].jump is None
    assert all(h.proxy_command is None for h in hops)


def test_the_first_hop_keeps_its_own_proxy_and_the_bastion_is_excluded(
        ssh_config: Path, source: str) -> None:
    target = resolve(Endpoint(host="db.corp"), force_fallback=source == "fallback reader")
    assert [h.alias for h in target.hops] == ["bastion.corp", "db.corp"]


@pytest.mark.parametrize("spec", ["u@[::1]:2200", "ssh://u@h6:2200/", "ssh://u@h6:2200"])
def test_ipv6_and_uri_hops(isolated: object, spec: str, source: str) -> None:
    target = resolve(Endpoint(host="t.example.com", proxy_jump=spec),
                     force_fallback=source == "fallback reader")
    hop = target.hops[0]
    assert (hop.hostname, hop.port, hop.user) == (
        "::1" if "::1" in spec else "h6", 2200, "u")
    assert hop.host_key_name == ("[::1]:2200" if "::1" in spec else "[h6]:2200")


def test_proxy_command_none_with_a_catch_all_jump_does_not_recurse(isolated: object,
                                                                   source: str) -> None:
    write_config("Host bastion\n  ProxyCommand none\nHost *\n  ProxyJump bastion\n")
    target = resolve(Endpoint(host="bastion"), force_fallback=source == "fallback reader")
    assert target.jump is None and target.proxy_command is None
    db = resolve(Endpoint(host="db"), force_fallback=source == "fallback reader")
    assert [h.alias for h in db.hops] == ["bastion", "db"]


def test_an_ipv6_address_in_an_ssh_uri_is_refused_as_openssh_does(isolated: object,
                                                                 source: str) -> None:
    with pytest.raises(SSHError, match="ProxyJump"):
        resolve(Endpoint(host="t", proxy_jump="ssh://u@[::1]:2200"),
                force_fallback=source == "fallback reader")


def test_a_jump_host_loop_is_one_clear_error(ssh_config: Path, source: str) -> None:
    with pytest.raises(SSHError, match="jumphost loop via loop"):
        resolve(Endpoint(host="loop"), force_fallback=source == "fallback reader")


def test_profile_jump_wins_over_config_proxy_command(ssh_config: Path, source: str) -> None:
    target = resolve(Endpoint(host="via-proxy", proxy_jump="first"),
                     force_fallback=source == "fallback reader")
    assert target.proxy_command is None and target.jump is not None
    assert target.jump.alias == "first"


# --- names checked as OpenSSH checks them ----------------------------------------------------


@pytest.mark.parametrize("host", ["a$(touch pwned)b", "x;id", "-oProxyCommand=id", "a b",
                                  "a`id`", "h|x"])
def test_hostile_host_names_are_refused_before_any_shell(
        ssh_config: Path, tmp_path: Path, host: str, source: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SSHError, match="characters OpenSSH refuses"):
        resolve(Endpoint(host=host, proxy_command="printf %h"),
                force_fallback=source == "fallback reader")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("user", ["a;b", "$(id)x'", "-l", "x\\"])
def test_hostile_user_names_are_refused(ssh_config: Path, user: str, source: str) -> None:
    with pytest.raises(SSHError, match="characters OpenSSH refuses"):
        resolve(Endpoint(host="lab", user=user), force_fallback=source == "fallback reader")


def test_hostile_jump_hosts_are_refused(ssh_config: Path, source: str) -> None:
    with pytest.raises(SSHError, match=r"\$\(id\)"):
        resolve(Endpoint(host="lab", proxy_jump="ok,$(id)"),
                force_fallback=source == "fallback reader")


# --- agents and known hosts ------------------------------------------------------------------


def test_identity_agents(ssh_config: Path, monkeypatch: pytest.MonkeyPatch,
                         source: str) -> None:
    fallback = source == "fallback reader"
    monkeypatch.setenv("MY_AGENT", "/run/my.sock")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/default.sock")
    assert agent_socket(resolve(Endpoint(host="agent1p"), force_fallback=fallback)) == str(
        Path.home() / ".1password" / "agent.sock")
    assert agent_socket(resolve(Endpoint(host="agentnone"), force_fallback=fallback)) is None
    assert agent_socket(resolve(Endpoint(host="agentvar"), force_fallback=fallback)) == \
        "/run/my.sock"
    assert agent_socket(resolve(Endpoint(host="plain"), force_fallback=fallback)) == \
        "/run/default.sock"


def test_known_hosts_settings(ssh_config: Path, tmp_path: Path, source: str) -> None:
    fallback = source == "fallback reader"
    vagrant = resolve(Endpoint(host="vagrant"), force_fallback=fallback)
    assert vagrant.record_file == Path("/dev/null") and vagrant.strict_host_keys == "no"
    nohosts = resolve(Endpoint(host="nohosts"), force_fallback=fallback)
    assert nohosts.known_hosts == () and nohosts.record_file is None
    # The profile's file is where keys go, whatever the config says.
    profiled = resolve(Endpoint(host="nohosts", known_hosts=tmp_path / "kh"),
                       force_fallback=fallback)
    assert profiled.record_file == tmp_path / "kh"
    hashed = resolve(Endpoint(host="hashed"), force_fallback=fallback)
    assert hashed.hash_known_hosts and hashed.strict_host_keys == "accept-new"


def test_openssh_is_used_when_it_sees_our_home(ssh_config: Path, openssh: Path) -> None:
    assert resolve(Endpoint(host="lab")).source == f"ssh -G ({openssh})"


def test_the_fallback_reader_is_used_when_ssh_has_another_home(ssh_config: Path) -> None:
    # No wrapper: the real ssh reads the passwd home, not this test's HOME.
    assert resolve(Endpoint(host="lab")).source == "fallback reader"


def test_a_config_openssh_rejects_is_one_ssh_error(isolated: object, source: str) -> None:
    write_config("Host x\n  Port\n")
    with pytest.raises(SSHError):
        resolve(Endpoint(host="x"), force_fallback=source == "fallback reader")


def test_a_group_writable_config_is_refused_as_openssh_does(isolated: object,
                                                            source: str) -> None:
    path = write_config("Host x\n  Port 2\n")
    path.chmod(0o666)  # Debian's OpenSSH allows group write for a private group
    with pytest.raises(SSHError, match="Bad owner or permissions"):
        resolve(Endpoint(host="x"), force_fallback=source == "fallback reader")
