"""The keys a login offers, in OpenSSH's order (sshconnect2.c pubkey_prepare), and the
login's answers when a key cannot be used: FIDO keys, encrypted keys, public halves only.
Logins run against mockssh (a real paramiko server in this process)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import mockssh
import paramiko
import pytest

from remote_runtime import ssh
from remote_runtime.errors import AuthenticationError
from remote_runtime.ssh.identities import plan, read_public
from remote_runtime.ssh.prompts import visible


def keygen(path: Path, *, passphrase: str = "", key_type: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-C", path.name,
                    "-f", str(path)], check=True, capture_output=True)
    return path


def blob_of(path: Path) -> bytes:
    return base64.b64decode(Path(str(path) + ".pub").read_text().split()[1])


class FakeAgentKey(paramiko.agent.AgentKey):
    """An agent's key as paramiko lists it (no agent is asked to sign in these tests)."""

    def __init__(self, blob: bytes, comment: str):
        super().__init__(agent=None, blob=blob, comment=comment)  # type: ignore[arg-type]


def labels(identities: list) -> list[str]:
    return [Path(i.label).name if "/" in i.label else i.label for i in identities]


def test_public_halves_are_read_without_a_passphrase(tmp_path: Path) -> None:
    plain = keygen(tmp_path / "plain")
    locked = keygen(tmp_path / "locked", passphrase="secret")
    Path(str(locked) + ".pub").unlink()  # only the private file: its public section
    assert read_public(plain) == ("ssh-ed25519", blob_of(plain))
    found = read_public(locked)
    assert found is not None and found[0] == "ssh-ed25519"
    assert read_public(Path(str(plain) + ".pub")) == ("ssh-ed25519", blob_of(plain))
    assert read_public(tmp_path / "absent") is None


def test_openssh_order_with_the_profile_key_first(tmp_path: Path) -> None:
    listed, profile, agent_only, file_only = (keygen(tmp_path / n) for n in
                                              ("listed", "profile", "agent_only", "file_only"))
    agent = [FakeAgentKey(blob_of(agent_only), "agent_only"),
             FakeAgentKey(blob_of(listed), "listed")]
    ordered, notes = plan([profile, listed, file_only], [], agent, identities_only=False,
                          profile_identity=profile)
    # The profile's key; the agent's copy of a listed key; other agent keys; files.
    # The profile's key; then, in the agent's order, its keys (a listed key as the
    # agent's copy); then the listed keys the agent does not hold.
    assert labels(ordered) == ["profile", "agent key agent_only", "listed", "file_only"]
    assert ordered[2].agent_key is not None and notes == []


def test_identities_only_keeps_the_agents_copy_of_listed_keys(tmp_path: Path) -> None:
    listed, other = keygen(tmp_path / "listed"), keygen(tmp_path / "other")
    public_only = tmp_path / "listed.pub"
    agent = [FakeAgentKey(blob_of(other), "other"), FakeAgentKey(blob_of(listed), "listed")]
    ordered, _ = plan([public_only], [], agent, identities_only=True, profile_identity=None)
    assert len(ordered) == 1 and ordered[0].agent_key is not None
    assert ordered[0].agent_key.blob == blob_of(listed)


def test_certificates_first_and_beside_their_keys(tmp_path: Path) -> None:
    ca, key = keygen(tmp_path / "ca"), keygen(tmp_path / "key")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "t", "-n", "alice",
                    str(key) + ".pub"], check=True, capture_output=True)
    ordered, _ = plan([key], [], [], identities_only=False, profile_identity=None)
    assert labels(ordered) == ["key", "key-cert.pub"]  # -cert.pub beside an IdentityFile
    assert ordered[1].cert is not None and ordered[1].path == key
    moved = tmp_path / "elsewhere.pub"
    os.rename(str(key) + "-cert.pub", moved)
    ordered, notes = plan([key], [moved], [], identities_only=False, profile_identity=None)
    assert labels(ordered) == ["elsewhere.pub", "key"]  # CertificateFile first
    ordered, notes = plan([], [moved], [], identities_only=False, profile_identity=None)
    assert ordered == [] and "private key is neither" in notes[0]


def test_server_text_is_shown_as_sent_without_terminal_escapes() -> None:
    assert visible("Duo two-factor login\n\n 1. Duo Push\nPasscode: ") == \
        "Duo two-factor login\n\n 1. Duo Push\nPasscode: "
    assert visible("\x1b[2Jcode:\r") == "\\x1b[2Jcode:"


# --- logins ------------------------------------------------------------------------------


class Person:
    """Answers prompts as a person at a terminal would; records what was shown."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.asked: list[tuple[str, bool]] = []

    def ask(self, prompt: str, *, echo: bool) -> str:
        self.asked.append((prompt, echo))
        return self.answers.pop(0)

    def show(self, text: str) -> None:
        self.asked.append((text, True))


def login(tmp_path: Path, server: mockssh.Server, key: Path, **kwargs: object) -> None:
    known = tmp_path / "known_hosts"
    server_key = paramiko.RSAKey(filename=str(Path(mockssh.__file__).parent / "server-key"))
    known.write_text(f"[127.0.0.1]:{server.port} ssh-rsa {server_key.get_base64()}\n")
    endpoint = ssh.Endpoint(host="127.0.0.1", port=server.port, user="alice",
                            identity_file=key, known_hosts=known)
    with ssh.connect(endpoint, **kwargs) as session:  # type: ignore[arg-type]
        assert session.run("echo in").stdout == "in\n"


def fido_key(path: Path) -> Path:
    """An sk-ssh-ed25519 key file pair as ssh-keygen -t ed25519-sk writes its public half."""
    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = string(b"sk-ssh-ed25519@openssh.com") + string(os.urandom(32)) + string(b"ssh:")
    Path(str(path) + ".pub").write_text(
        f"sk-ssh-ed25519@openssh.com {base64.b64encode(blob).decode()} fido\n")
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n(a security key handle)\n"
                    "-----END OPENSSH PRIVATE KEY-----\n")
    return path


def test_a_fido_key_gets_one_line_naming_the_limitation(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    user_key = keygen(tmp_path / "user", key_type="rsa")
    with mockssh.Server({"alice": str(user_key)}) as server, \
            pytest.raises(AuthenticationError) as info:
        login(tmp_path, server, fido_key(tmp_path / "id_ed25519_sk"))
    assert "FIDO" in info.value.message and "sk-ssh-ed25519@openssh.com" in info.value.message
    assert info.value.hint is not None and "paramiko cannot sign" in info.value.hint


def locked_pair(tmp_path: Path, passphrase: str) -> tuple[Path, Path]:
    """A key unencrypted (for mockssh, which reads it) and the same key encrypted."""
    plain = keygen(tmp_path / f"plain-{passphrase}", key_type="rsa")
    locked = tmp_path / f"locked-{passphrase}"
    locked.write_bytes(plain.read_bytes())
    locked.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", passphrase, "-f", str(locked)],
                   check=True, capture_output=True)
    return plain, locked


def test_an_encrypted_key_asks_for_its_passphrase_once_per_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain, locked = locked_pair(tmp_path, "right")
    with mockssh.Server({"alice": str(plain)}) as server:
        person = Person("wrong", "right")
        login(tmp_path, server, locked, prompter=person)
        assert [p for p, _ in person.asked] == [f"Enter passphrase for key '{locked}': "] * 2
        again = Person()
        login(tmp_path, server, locked, prompter=again)  # decrypted once, kept in memory
        assert again.asked == []


def test_an_encrypted_key_without_a_terminal_says_how(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain, locked = locked_pair(tmp_path, "pw")
    with mockssh.Server({"alice": str(plain)}) as server, \
            pytest.raises(AuthenticationError) as info:
        login(tmp_path, server, locked)
    assert "no terminal to ask for its passphrase" in info.value.message
