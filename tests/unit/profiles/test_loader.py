"""The profiles loader: schema, lookup order, and errors that say where (file, line,
profile, key) with a "did you mean" for misspelt keys."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support.env import REPO_ROOT, Isolated

from remote_runtime import profiles
from remote_runtime.errors import ExitCode, ProfileError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems_of(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = write(tmp_path / "profiles.yaml", text)
    _, problems = profiles.validate(path)
    return path, problems


def load_error(tmp_path: Path, text: str) -> tuple[Path, ProfileError]:
    path = write(tmp_path / "profiles.yaml", text)
    with pytest.raises(ProfileError) as info:
        profiles.load(path)
    assert info.value.exit_code == ExitCode.PROFILE
    assert "\n" not in info.value.message
    return path, info.value


FULL = """
profiles:
  lab-box:
    description: the box
    ssh:
      host: lab-box.example.com
      port: 2222
      user: alice
      identity_file: ~/.ssh/id_ed25519
      known_hosts: ~/kh
      proxy_jump: bastion
      proxy_command: null
    jupyter:
      port: 9999
      command: /opt/conda/bin/jupyter
      env: existing
      python: python3.11
      workdir: /srv/notebooks
      bind_host: 127.0.0.2
      lease_seconds: 60
  vm:
    gce:
      project: p
      zone: us-central1-a
      instance: dl-vm
      user: bob
      address: iap
      start_if_stopped: false
      stop_on_exit: true
      ssh_port: 22
      api_endpoint: http://127.0.0.1:9/compute/v1
      account: bob@example.com
"""


# --- good files ----------------------------------------------------------------------------


def test_full_file_loads_every_key(tmp_path: Path, isolated: Isolated) -> None:
    path = write(tmp_path / "profiles.yaml", FULL)
    loaded = profiles.load(path)
    assert loaded.path == path and list(loaded.profiles) == ["lab-box", "vm"]
    box = loaded.get("lab-box")
    assert box.kind == "ssh" and box.source == path
    assert box.target == "alice@lab-box.example.com:2222"
    assert box.ssh == profiles.SSHSettings(
        host="lab-box.example.com",
        port=2222,
        user="alice",
        identity_file=isolated.home / ".ssh" / "id_ed25519",  # ~ expanded
        known_hosts=isolated.home / "kh",
        proxy_jump="bastion",
        proxy_command=None,  # an explicit null means the default
    )
    assert box.jupyter == profiles.JupyterSettings(
        port=9999,
        port_explicit=True,
        command="/opt/conda/bin/jupyter",
        env="existing",
        python="python3.11",
        workdir="/srv/notebooks",
        bind_host="127.0.0.2",
        lease_seconds=60,
    )
    vm = loaded.get("vm")
    assert vm.kind == "gce" and vm.ssh is None and vm.gce is not None
    assert vm.target == "p/us-central1-a/dl-vm"
    assert (vm.gce.address, vm.gce.start_if_stopped, vm.gce.stop_on_exit) == ("iap", False, True)
    assert vm.gce.account == "bob@example.com"
    assert vm.jupyter == profiles.JupyterSettings()  # no jupyter section: all defaults


def test_defaults_and_port_flag(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        """
        profiles:
          plain:
            ssh: {host: h}
          nulled:
            ssh: {host: h}
            jupyter: {port: null}
          written:
            ssh: {host: h}
            jupyter: {port: 8888}
        """,
    )
    loaded = profiles.load(path)
    plain = loaded.get("plain")
    assert plain.target == "h"
    assert plain.jupyter.port == profiles.DEFAULT_JUPYTER_PORT == 8888
    assert plain.jupyter.env == "auto" and plain.jupyter.bind_host == "127.0.0.1"
    assert plain.jupyter.stack == "auto"
    # Only a port written in the file makes a taken port an error.
    assert plain.jupyter.port_explicit is False
    assert loaded.get("nulled").jupyter.port_explicit is False
    written = loaded.get("written").jupyter
    assert (written.port, written.port_explicit) == (8888, True)


def test_kernel_section(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        """
        profiles:
          plain:
            ssh: {host: h}
          dl:
            ssh: {host: h}
            kernel:
              python: ~/venvs/ml/bin/python
              setup:
                - source ~/miniconda3/bin/activate ml
                - export HF_HOME=/data/hf
              install_ipykernel: yes
          one:
            ssh: {host: h}
            kernel: {setup: "module load cuda", install_ipykernel: no}
        """,
    )
    loaded = profiles.load(path)
    assert loaded.get("plain").kernel == profiles.KernelSettings(
        python="auto", setup=(), install_ipykernel="ask")
    assert loaded.get("dl").kernel == profiles.KernelSettings(
        python="~/venvs/ml/bin/python",  # kept as written: `~` is the remote's home
        setup=("source ~/miniconda3/bin/activate ml", "export HF_HOME=/data/hf"),
        install_ipykernel="yes")  # YAML's bare yes is a boolean; both spellings work
    one = loaded.get("one").kernel
    assert (one.setup, one.install_ipykernel) == (("module load cuda",), "no")


def test_shipped_example_is_valid() -> None:
    example = REPO_ROOT / "profiles.example.yaml"
    loaded, problems = profiles.validate(example)
    assert problems == []
    assert {"ssh", "gce"} == {p.kind for p in loaded.profiles.values()}


def test_yaml_merge_keys_share_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        """
        profiles:
          a: &base
            ssh: {host: one, user: alice}
            jupyter: {env: managed}
          b:
            <<: *base
            ssh: {host: two}
        """,
    )
    loaded = profiles.load(path)
    b = loaded.get("b")
    assert b.ssh is not None and b.ssh.host == "two" and b.ssh.user is None  # shallow, as YAML
    assert b.jupyter.env == "managed"


# --- lookup order ----------------------------------------------------------------------------


def test_lookup_order(tmp_path: Path, isolated: Isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = isolated.config / "remote-runtime" / "profiles.yaml"
    assert profiles.resolve_path() == xdg
    write(xdg, "profiles:\n  from-xdg:\n    ssh: {host: h}\n")
    assert list(profiles.load().profiles) == ["from-xdg"]

    env_file = write(tmp_path / "env.yaml", "profiles:\n  from-env:\n    ssh: {host: h}\n")
    monkeypatch.setenv(profiles.ENV_VAR, str(env_file))
    assert profiles.resolve_path() == env_file
    assert list(profiles.load().profiles) == ["from-env"]

    flag = write(tmp_path / "flag.yaml", "profiles:\n  from-flag:\n    ssh: {host: h}\n")
    assert list(profiles.load(flag).profiles) == ["from-flag"]
    assert list(profiles.load(str(flag)).profiles) == ["from-flag"]


def test_lookup_expands_tilde_and_config_dir_override(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert profiles.resolve_path("~/p.yaml") == isolated.home / "p.yaml"
    monkeypatch.setenv(profiles.ENV_VAR, "~/env.yaml")
    assert profiles.resolve_path() == isolated.home / "env.yaml"
    monkeypatch.delenv(profiles.ENV_VAR)
    monkeypatch.setenv("REMOTE_RUNTIME_CONFIG_DIR", str(isolated.home / "cfg"))
    assert profiles.resolve_path() == isolated.home / "cfg" / "profiles.yaml"


def test_missing_default_file_names_it_with_a_hint(isolated: Isolated) -> None:
    with pytest.raises(ProfileError) as info:
        profiles.load()
    expected = isolated.config / "remote-runtime" / "profiles.yaml"
    assert info.value.message == f"{expected}: profiles file not found"
    assert info.value.hint and "--profiles" in info.value.hint


# --- each kind of problem ----------------------------------------------------------------------


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path, error = load_error(tmp_path, "profiles:\n  a:\n    ssh: {host: h\n  b: 1\n")
    assert error.message.startswith(f"{path} line 4: malformed YAML")


def test_unknown_tag_is_malformed_yaml_not_a_crash(tmp_path: Path) -> None:
    path, error = load_error(tmp_path, "profiles:\n  a:\n    ssh:\n      host: !vault x\n")
    assert error.message.startswith(f"{path} line 4: malformed YAML")
    assert "!vault" in error.message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read profiles file"):
        profiles.load(tmp_path)  # a directory
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"profiles:\n  caf\xe9:\n")
    with pytest.raises(ProfileError, match=f"{bad}: cannot read profiles file"):
        profiles.load(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "file is empty (expected a 'profiles:' mapping)"),
        ("# only comments\n", "file is empty"),
        ("lab-box:\n  ssh: {host: h}\n", "expected a top-level 'profiles:' mapping"),
        ("- a\n- b\n", "expected a top-level 'profiles:' mapping"),
        ("profiles: [a, b]\n", "line 1: 'profiles' must be a mapping of names to profiles"),
    ],
)
def test_file_shape_problems(tmp_path: Path, text: str, expected: str) -> None:
    path, problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}")
    assert expected in problems[0]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path, "profile:\n  a: 1\nprofiles:\n  b:\n    ssh: {host: h}\n"
    )
    assert problems == [
        f"{path} line 1: unknown top-level key 'profile' (did you mean 'profiles'?)"
    ]


# `line` counts from the profile's own name line ("  box:", line 1 of the profile).
@pytest.mark.parametrize(
    ("body", "line", "where", "reason"),
    [
        # unknown keys, with and without a close match
        ("ssh:\n  host: h\n  usr: u\n", 4, "key 'ssh.usr'", "unknown key (did you mean 'user'?)"),
        (
            "ssh: {host: h}\njupyter:\n  prot: 1\n",
            4,
            "key 'jupyter.prot'",
            "unknown key (did you mean 'port'?)",
        ),
        ("ssh: {host: h}\nxyzzy: 1\n", 3, "key 'xyzzy'", "unknown key"),
        (
            "ssh: {host: h}\njupiter: {}\n",
            3,
            "key 'jupiter'",
            "unknown key (did you mean 'jupyter'?)",
        ),
        # wrong types
        ("ssh: {host: h, port: '22'}\n", 2, "key 'ssh.port'", "must be a port number (1-65535)"),
        ("ssh: {host: h, port: true}\n", 2, "key 'ssh.port'", "must be a port number"),
        ("ssh: {host: 42}\n", 2, "key 'ssh.host'", "must be a non-empty string"),
        ("ssh: {host: ''}\n", 2, "key 'ssh.host'", "must be a non-empty string"),
        ('ssh: {host: "a\\nb"}\n', 2, "key 'ssh.host'", "must be a single line"),
        ("ssh: [h]\n", 2, "key 'ssh'", "must be a mapping of keys"),
        (
            "ssh: {host: h}\njupyter: {env: sometimes}\n",
            3,
            "key 'jupyter.env'",
            "must be one of auto, existing, managed",
        ),
        (
            "ssh: {host: h}\njupyter: {stack: newest}\n",
            3,
            "key 'jupyter.stack'",
            "must be one of auto, classic, modern",
        ),
        (
            "ssh: {host: h}\njupyter: {bind_host: 0.0.0.0}\n",
            3,
            "key 'jupyter.bind_host'",
            "must be a loopback address",
        ),
        (
            "ssh: {host: h}\njupyter: {bind_host: localhost}\n",
            3,
            "key 'jupyter.bind_host'",
            "must be a loopback address",
        ),
        (
            "ssh: {host: h}\njupyter: {lease_seconds: 5}\n",
            3,
            "key 'jupyter.lease_seconds'",
            ">= 10",
        ),
        # port ranges
        (
            "ssh: {host: h}\njupyter: {port: 0}\n",
            3,
            "key 'jupyter.port'",
            "must be between 1 and 65535, not 0",
        ),
        (
            "ssh: {host: h}\njupyter: {port: 65536}\n",
            3,
            "key 'jupyter.port'",
            "must be between 1 and 65535, not 65536",
        ),
        ("ssh: {host: h, port: -1}\n", 2, "key 'ssh.port'", "must be between 1 and 65535"),
        # required keys and target sections
        ("ssh: {user: u}\n", 2, "key 'ssh.host'", "is required"),
        ("jupyter: {port: 1234}\n", 1, "", "needs exactly one target section: 'ssh' or 'gce'"),
        ("description: x\n", 1, "", "needs exactly one target section"),
        ("ssh: {host: h}\ngce: {zone: z, instance: i}\n", 1, "", "needs exactly one target"),
        # gce sections
        ("gce: {zone: z}\n", 2, "key 'gce.instance'", "is required"),
        ("gce: {instance: i}\n", 2, "key 'gce.zone'", "is required"),
        (
            "gce: {zone: z, instance: i, address: public}\n",
            2,
            "key 'gce.address'",
            "must be one of auto, external, internal, iap",
        ),
        (
            "gce: {zone: z, instance: i, start_if_stopped: 'yes'}\n",
            2,
            "key 'gce.start_if_stopped'",
            "must be true or false",
        ),
        (
            "gce: {zone: z, instance: i, ssh_port: 99999}\n",
            2,
            "key 'gce.ssh_port'",
            "must be between 1 and 65535",
        ),
        (
            "gce: {zone: z, instance: i, api_endpoint: 'ftp://x'}\n",
            2,
            "key 'gce.api_endpoint'",
            "must be an http(s):// URL",
        ),
        (
            "gce: {zone: z, instance: i, zonee: y}\n",
            2,
            "key 'gce.zonee'",
            "unknown key (did you mean 'zone'?)",
        ),
        # kernel sections
        (
            "ssh: {host: h}\nkernel: {install_ipykernel: maybe}\n",
            3,
            "key 'kernel.install_ipykernel'",
            "must be one of ask, yes, no, not 'maybe'",
        ),
        ("ssh: {host: h}\nkernel: {python: ''}\n", 3, "key 'kernel.python'", "non-empty"),
        (
            "ssh: {host: h}\nkernel:\n  setup: [export A=1, 3]\n",
            4,
            "key 'kernel.setup'",
            "must be a list of shell lines",
        ),
        ("ssh: {host: h}\nkernel: {setup: {a: 1}}\n", 3, "key 'kernel.setup'", "shell lines"),
        (
            "ssh: {host: h}\nkernel: {pyhton: auto}\n",
            3,
            "key 'kernel.pyhton'",
            "unknown key (did you mean 'python'?)",
        ),
        ("ssh: {host: h}\nkernel: auto\n", 3, "key 'kernel'", "must be a mapping of keys"),
    ],
)
def test_profile_problems_name_file_line_profile_and_key(
    tmp_path: Path, body: str, line: int, where: str, reason: str
) -> None:
    text = "profiles:\n  box:\n" + textwrap.indent(body, "    ")
    path, problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    prefix = f"{path} line {line + 1}: profile 'box'" + (f" {where}" if where else "") + ": "
    assert problems[0].startswith(prefix), (problems[0], prefix)
    assert reason in problems[0]
    # load() raises the same line as a ProfileError.
    with pytest.raises(ProfileError) as info:
        profiles.load(path)
    assert info.value.message == problems[0]


def test_bad_profile_names(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path, "profiles:\n  'bad name':\n    ssh: {host: h}\n  -x:\n    ssh: {host: h}\n"
    )
    assert len(problems) == 2
    assert problems[0].startswith(f"{path} line 2: profile 'bad name': profile names use")
    assert problems[1].startswith(f"{path} line 4: profile '-x': profile names use")


def test_profile_that_is_not_a_mapping(tmp_path: Path) -> None:
    path, problems = problems_of(tmp_path, "profiles:\n  box: lab.example.com\n")
    assert problems == [
        f"{path} line 2: profile 'box': must be a mapping with an 'ssh' or a 'gce' section"
    ]


def test_non_string_keys(tmp_path: Path) -> None:
    path, error = load_error(tmp_path, "profiles:\n  box:\n    ssh: {host: h, 22: x}\n")
    assert error.message == f"{path} line 3: keys must be strings, not 22"


def test_duplicate_profile_names_are_refused(tmp_path: Path) -> None:
    path, error = load_error(
        tmp_path, "profiles:\n  box:\n    ssh: {host: one}\n  box:\n    ssh: {host: two}\n"
    )
    assert error.message == f"{path} line 4: duplicate key 'box' (first on line 2)"


def test_duplicate_keys_inside_a_section_are_refused(tmp_path: Path) -> None:
    path, error = load_error(
        tmp_path, "profiles:\n  box:\n    ssh:\n      host: one\n      host: two\n"
    )
    assert error.message == f"{path} line 5: duplicate key 'host' (first on line 4)"


def test_every_problem_is_collected_and_load_reports_the_first(tmp_path: Path) -> None:
    text = """
    profiles:
      one:
        ssh: {hots: h}
      two:
        ssh: {host: h}
        jupyter: {port: 0, env: x}
      ok:
        ssh: {host: h}
    """
    path, problems = problems_of(tmp_path, text)
    assert len(problems) == 4, problems
    assert (
        problems[0]
        == f"{path} line 3: profile 'one' key 'ssh.hots': unknown key (did you mean 'host'?)"
    )
    assert problems[1] == f"{path} line 3: profile 'one' key 'ssh.host': is required"
    assert {p.split(":")[1] for p in problems[2:]} == {
        " profile 'two' key 'jupyter.port'",
        " profile 'two' key 'jupyter.env'",
    }
    loaded, _ = profiles.validate(path)
    assert list(loaded.profiles) == ["ok"]  # valid profiles survive the others' problems
    with pytest.raises(ProfileError) as info:
        profiles.load(path)
    assert info.value.message == problems[0] + " (and 3 more problem(s))"
    assert info.value.details == "\n".join(problems[1:])
    assert info.value.hint and "profiles check" in info.value.hint


def test_unknown_profile_name_suggests_a_close_one(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        "profiles:\n  lab-box:\n    ssh: {host: h}\n  gpu:\n    ssh: {host: g}\n",
    )
    loaded = profiles.load(path)
    with pytest.raises(ProfileError) as info:
        loaded.get("lab-bx")
    assert info.value.message == f"{path}: no profile named 'lab-bx' (profiles: gpu, lab-box)"
    assert info.value.hint == "did you mean 'lab-box'?"
    with pytest.raises(ProfileError) as info:
        loaded.get("zzz")
    assert info.value.hint is None
