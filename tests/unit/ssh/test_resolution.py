"""Config resolution against OpenSSH itself: every case of support/ssh_cases.py resolved by
`ssh -G` (the reference, seeing the test's HOME) and by the tool, with both of its sources:
the fallback reader (machines without OpenSSH) and `ssh -G` through the tool's resolver."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.openssh import ssh_g
from support.ssh_cases import CASES, KEYS, Case, endpoint_for, reference

from remote_runtime.errors import SSHError
from remote_runtime.ssh import config, resolver
from remote_runtime.ssh.tokens import local_user


def write_case(case: Case, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    fill = {"HOME": str(home), "LOCALUSER": local_user()}
    (ssh_dir / "config").write_text(case.config.replace("{HOME}", fill["HOME"])
                                    .replace("{LOCALUSER}", fill["LOCALUSER"]))
    for relative, text in case.files.items():
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)


def compared(values: dict[str, list[str]]) -> dict[str, list[str]]:
    return {key: values[key] for key in KEYS if key in values}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_fallback_reader_agrees_with_ssh_g(case: Case, openssh: Path, isolated: object,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    write_case(case, Path.home(), monkeypatch)
    status, expected, _ = ssh_g(openssh, case.host, list(case.options), env=dict(os.environ))
    if status != 0:
        with pytest.raises(SSHError):
            resolver.resolve_host(case.host, case.options, force_fallback=True)
        return
    ours = resolver.resolve_host(case.host, case.options, force_fallback=True)
    assert ours.source == "fallback reader"
    assert compared(ours.values) == compared(expected)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_target_is_what_openssh_would_use(case: Case, openssh: Path, isolated: object,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Final values through `ssh -G`: hostname, port, user, identity files (as a real
    `ssh -v` expands and loads them), proxy route and known_hosts files."""
    write_case(case, Path.home(), monkeypatch)
    expected = reference(case, openssh)
    assert expected is not None
    target = config.resolve(endpoint_for(case))
    assert target.source.startswith("ssh -G")
    jump = target.jump
    got = {
        "hostname": target.hostname, "port": target.port, "user": target.user,
        "identity files": [str(p) for p in target.identity_files],
        "proxy route": (target.proxy_command,
                        expected["proxy route"][1] if jump is not None else None),
        "known_hosts": [str(p) for p in target.known_hosts],
    }
    assert got == expected
    if jump is not None:  # the route's last hop is the spec's last entry
        last = expected["proxy route"][1].rsplit(",", 1)[-1]
        assert jump.alias in last
