"""gcloud's key conventions (`providers.gce.keys`): user names, key pairs, metadata entries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from remote_runtime.errors import SSHError
from remote_runtime.providers.gce import keys as gce_keys

OTHER_KEY = ("bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBobBobBobBobBobBobBobBobBobBobBobBobBobBob"
             " bob")
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIEd1ZXN0QXR0cmlidXRlSG9zdEtleUZvclRlc3RpbmdYWA=="


def progress(_line: str) -> None:
    pass


@pytest.mark.parametrize(("env", "expected"), [
    ({"USER": "alice"}, "alice"),
    ({"LOGNAME": "Bob.Smith", "USER": "ignored"}, "Bob.Smith"),
    ({"USER": "Zoë Müller"}, "zo__m_ller"),
    ({"USER": "9 lives"}, "g9_lives"),
])
def test_default_user_as_gcloud(env: dict[str, str], expected: str) -> None:
    assert gce_keys.default_user(env) == expected


def test_key_pair_without_ssh_keygen(tmp_path: Path) -> None:
    key = tmp_path / "ssh" / "k"
    line = gce_keys.ensure_key_pair(key, "dave", {"PATH": str(tmp_path / "none")}, progress)
    kind, blob, comment = gce_keys.parse_public_key(line)
    assert (kind, comment) == ("ssh-rsa", "dave")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("3072 ")
    # A lost .pub is derived again from the private key (with and without ssh-keygen).
    for env in ({"PATH": os.environ["PATH"]}, {"PATH": str(tmp_path / "none")}):
        Path(f"{key}.pub").unlink()
        again = gce_keys.ensure_key_pair(key, "dave", env, progress)
        assert gce_keys.parse_public_key(again)[:2] == (kind, blob)


def test_public_key_without_private_key(tmp_path: Path) -> None:
    key = tmp_path / "k"
    Path(f"{key}.pub").write_text("ssh-rsa AAAA x\n")
    with pytest.raises(SSHError, match="exists but its private key"):
        gce_keys.ensure_key_pair(key, "x", {}, progress)


def test_has_key_ignores_comment_and_other_users() -> None:
    line = "ssh-ed25519 " + ED25519 + " me@laptop"
    value = f"{OTHER_KEY}\nalice:ssh-ed25519 {ED25519} other-comment"
    assert gce_keys.has_key(value, "alice", line)
    assert not gce_keys.has_key(value, "bob", line)
    assert gce_keys.add_key(OTHER_KEY, "alice", line) == f"{OTHER_KEY}\nalice:{line}"


def test_default_user_without_a_user_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no `pwd`; it always sets USERNAME, which is read first."""
    monkeypatch.setitem(sys.modules, "pwd", None)
    assert gce_keys.default_user({"USERNAME": "Ada Lovelace"}) == "ada_lovelace"
    assert gce_keys.default_user({}) == "user"
