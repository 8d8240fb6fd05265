"""Strict host-key checking against known_hosts files, checked against OpenSSH's own
tools where they define the format (ssh-keygen's fingerprints and hashed entries)."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
from support.env import REPO_ROOT, unavailable

from remote_runtime.errors import ExitCode, HostKeyError
from remote_runtime.ssh.hostkeys import HostKeyChecker, fingerprint, host_matches, read_known_hosts


@dataclass(frozen=True)
class Key:
    name: str
    b64: str

    def get_name(self) -> str:
        return self.name

    def get_base64(self) -> str:
        return self.b64

    @property
    def line(self) -> str:
        return f"{self.name} {self.b64}"


def ed25519() -> Key:
    blob = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-ed25519", os.urandom(32)))
    return Key("ssh-ed25519", base64.b64encode(blob).decode())


def ecdsa() -> Key:
    key = paramiko.ECDSAKey.generate()
    return Key(key.get_name(), key.get_base64())


def known_hosts(tmp_path: Path, *lines: str, name: str = "known_hosts") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def needs(tool: str) -> None:
    if shutil.which(tool) is None:
        unavailable(f"{tool} (OpenSSH; scripts/setup.sh installs it)")


# --- formats, against OpenSSH ------------------------------------------------------------------


def test_fingerprint_is_ssh_keygens(tmp_path: Path) -> None:
    needs("ssh-keygen")
    for key in (ed25519(), ecdsa()):
        pub = tmp_path / "key.pub"
        pub.write_text(key.line + " comment\n")
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.split()[1] == fingerprint(key.b64)


@pytest.mark.parametrize("name", ["lab.example.com", "[lab.example.com]:2222", "10.0.0.7"])
def test_hashed_entries_written_by_ssh_keygen_match(tmp_path: Path, name: str) -> None:
    needs("ssh-keygen")
    key = ed25519()
    path = known_hosts(tmp_path, f"{name} {key.line}", f"other.example.com {ed25519().line}")
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], capture_output=True, check=True)
    hashed = path.read_text()
    assert name not in hashed and hashed.startswith("|1|")
    entries = read_known_hosts(path, name)
    assert [(e.key_type, e.key_b64, e.line) for e in entries] == [("ssh-ed25519", key.b64, 1)]
    HostKeyChecker(name, [path]).verify(key, accept_new=False)
    assert read_known_hosts(path, "lab.example.org") == []


# --- host patterns -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        ("lab", "lab", True),
        ("LAB.Example.com", "lab.example.COM", True),  # host names are case-insensitive
        ("lab", "lab2", False),
        ("a,b,lab", "lab", True),
        ("*.example.com", "gpu.example.com", True),
        ("*.example.com", "example.com", False),
        ("gpu?.example.com", "gpu7.example.com", True),
        ("gpu?.example.com", "gpu10.example.com", False),
        ("*.example.com,!bad.example.com", "bad.example.com", False),
        ("!bad.example.com,*.example.com", "bad.example.com", False),  # order does not matter
        ("!bad.example.com", "good.example.com", False),  # a negation alone matches nothing
        ("[lab]:2222", "[lab]:2222", True),
        ("[lab]:2222", "lab", False),
        ("[lab]:2222", "[lab]:22", False),
        ("lab", "[lab]:2222", False),
        ("[10.0.0.7]:2200", "[10.0.0.7]:2200", True),
        ("[l]", "l", False),  # brackets are literal, not a character class
        ("[*]:2222", "[anything]:2222", True),
    ],
)
def test_host_patterns(patterns: str, name: str, expected: bool) -> None:
    assert host_matches(patterns, name) is expected


def test_reading_skips_comments_blank_and_short_lines(tmp_path: Path) -> None:
    key = ed25519()
    path = known_hosts(
        tmp_path,
        "# a comment naming lab",
        "",
        "lab ssh-ed25519",  # too short
        f"   lab {key.line} trailing comment",
        f"@cert-authority *.example.com {ed25519().line}",
    )
    entries = read_known_hosts(path, "lab")
    assert [(e.line, e.key_b64, e.marker) for e in entries] == [(4, key.b64, None)]
    assert read_known_hosts(tmp_path / "absent", "lab") == []


def test_unreadable_known_hosts(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(HostKeyError, match="cannot read known_hosts file"):
        HostKeyChecker("lab", [tmp_path / "dir"])


# --- verdicts ------------------------------------------------------------------------------


def test_known_key_is_accepted_and_nothing_written(tmp_path: Path) -> None:
    key = ed25519()
    path = known_hosts(tmp_path, f"lab,10.0.0.7 {key.line}")
    before = path.stat().st_mtime_ns
    HostKeyChecker("lab", [path]).verify(key, accept_new=False)
    HostKeyChecker("lab", [path]).verify(key, accept_new=True)
    assert path.stat().st_mtime_ns == before


def test_unknown_host_is_refused_with_fingerprint_and_hint(tmp_path: Path) -> None:
    key = ed25519()
    path = known_hosts(tmp_path, f"other {ed25519().line}")
    before = path.read_text()
    with pytest.raises(HostKeyError) as info:
        HostKeyChecker("lab", [path]).verify(key, accept_new=False)
    error = info.value
    assert error.exit_code == ExitCode.SSH
    assert error.message == f"unknown host key for lab: ssh-ed25519 {fingerprint(key.b64)}"
    assert error.hint is not None
    assert "--accept-new-host-key" in error.hint and str(path) in error.hint
    assert path.read_text() == before


def test_changed_key_is_refused_naming_file_and_line_even_with_accept_new(
    tmp_path: Path,
) -> None:
    recorded, offered = ed25519(), ed25519()
    path = known_hosts(
        tmp_path, "# pinned by hand", f"other {ed25519().line}", f"lab {recorded.line}"
    )
    original = path.read_text()
    for accept_new in (False, True):
        with pytest.raises(HostKeyError) as info:
            HostKeyChecker("lab", [path]).verify(offered, accept_new=accept_new)
        message = info.value.message
        assert message.startswith("HOST KEY CHANGED for lab")
        assert f"{path} line 3" in message
        assert fingerprint(offered.b64) in message
        assert info.value.hint and f"ssh-keygen -R 'lab' -f {path}" in info.value.hint
    assert path.read_text() == original


def test_changed_key_found_in_the_second_file_names_that_file(tmp_path: Path) -> None:
    profile_file = known_hosts(tmp_path, name="profile_known_hosts")
    user_file = known_hosts(tmp_path, "", f"lab {ed25519().line}", name="user_known_hosts")
    with pytest.raises(HostKeyError, match=f"{user_file} line 2"):
        HostKeyChecker("lab", [profile_file, user_file]).verify(ed25519(), accept_new=True)


def test_a_key_of_another_type_is_unknown_not_changed(tmp_path: Path) -> None:
    path = known_hosts(tmp_path, f"lab {ecdsa().line}")
    key = ed25519()
    with pytest.raises(HostKeyError, match="unknown host key"):
        HostKeyChecker("lab", [path]).verify(key, accept_new=False)
    HostKeyChecker("lab", [path]).verify(key, accept_new=True)
    assert path.read_text().splitlines()[1] == f"lab {key.line}"


def test_rsa_sha2_signatures_compare_with_ssh_rsa_entries(tmp_path: Path) -> None:
    rsa = paramiko.RSAKey.generate(1024)
    path = known_hosts(tmp_path, f"lab ssh-rsa {rsa.get_base64()}")
    HostKeyChecker("lab", [path]).verify(Key("rsa-sha2-512", rsa.get_base64()), accept_new=False)
    other = paramiko.RSAKey.generate(1024)
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        HostKeyChecker("lab", [path]).verify(
            Key("rsa-sha2-256", other.get_base64()), accept_new=True
        )


def test_revoked_key_is_refused_even_when_also_listed(tmp_path: Path) -> None:
    key = ed25519()
    path = known_hosts(tmp_path, f"lab {key.line}", f"@revoked * {key.line}")
    for accept_new in (False, True):
        with pytest.raises(HostKeyError) as info:
            HostKeyChecker("lab", [path]).verify(key, accept_new=accept_new)
        assert "revoked" in info.value.message and f"{path} line 2" in info.value.message
    # Revoking one key does not refuse another.
    HostKeyChecker(
        "lab",
        [known_hosts(tmp_path, f"@revoked * {ed25519().line}", f"lab {key.line}", name="kh2")],
    ).verify(key, accept_new=False)


def test_cert_authority_lines_are_not_host_keys(tmp_path: Path) -> None:
    ca = ed25519()
    path = known_hosts(tmp_path, f"@cert-authority lab {ca.line}")
    with pytest.raises(HostKeyError, match="unknown host key"):
        HostKeyChecker("lab", [path]).verify(ca, accept_new=False)


def test_accept_new_records_in_the_first_file(tmp_path: Path) -> None:
    key = ed25519()
    first = tmp_path / "new" / "dir" / "known_hosts"  # created, like ~/.ssh on a new machine
    second = known_hosts(tmp_path, "# user file", name="user_known_hosts")
    HostKeyChecker("[lab]:2222", [first, second]).verify(key, accept_new=True)
    assert first.read_text() == f"[lab]:2222 {key.line}\n"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    assert second.read_text() == "# user file\n"
    # Now known: no flag needed, and recording again is a no-op.
    HostKeyChecker("[lab]:2222", [first, second]).verify(key, accept_new=False)
    HostKeyChecker("[lab]:2222", [first]).verify(key, accept_new=True)
    assert first.read_text() == f"[lab]:2222 {key.line}\n"
    assert not list(first.parent.glob("*.tmp"))


def test_accept_new_keeps_existing_lines(tmp_path: Path) -> None:
    path = known_hosts(tmp_path, "# mine", f"other {ed25519().line}")
    before = path.read_text()
    key = ed25519()
    HostKeyChecker("lab", [path]).verify(key, accept_new=True)
    assert path.read_text() == before + f"lab {key.line}\n"


def test_cannot_record_is_a_warning_as_in_openssh(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").mkdir()  # a directory where the file should be
    note = HostKeyChecker("lab", [tmp_path / "known_hosts" / "x"], record_file=tmp_path /
                          "known_hosts").verify(ed25519(), accept_new=True)
    assert note is not None and note.startswith("warning:") and "a directory" in note


# --- known_hosts kept as OpenSSH keeps it ------------------------------------------------------


def test_a_new_key_is_appended_never_replacing_the_file(tmp_path: Path) -> None:
    path = known_hosts(tmp_path, "# mine", f"other {ed25519().line}")
    path.chmod(0o644)
    before, inode = path.read_text(), path.stat().st_ino
    key = ed25519()
    note = HostKeyChecker("lab", [path]).verify(key, accept_new=True)
    assert note == f"recorded the host key of lab in {path}"
    assert path.stat().st_ino == inode and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == before + f"lab {key.line}\n"


def test_a_file_without_a_final_newline_gets_one_before_the_new_line(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("# no newline at the end")
    key = ed25519()
    HostKeyChecker("lab", [path]).verify(key, accept_new=True)
    assert path.read_text() == f"# no newline at the end\nlab {key.line}\n"


def test_a_symlinked_known_hosts_stays_a_symlink(tmp_path: Path) -> None:
    real = known_hosts(tmp_path, "# dotfiles repo", name="real_known_hosts")
    link = tmp_path / "known_hosts"
    link.symlink_to(real)
    key = ed25519()
    HostKeyChecker("lab", [link]).verify(key, accept_new=True)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == f"# dotfiles repo\nlab {key.line}\n"
    HostKeyChecker("lab", [link]).verify(key, accept_new=False)  # found through the link


def test_dev_null_records_nothing_and_stays_a_device(tmp_path: Path) -> None:
    # A character device of our own (root can make one); /dev/null itself otherwise.
    device = tmp_path / "null"
    if os.geteuid() == 0:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        device = Path(os.devnull)
    for strict in ("accept-new", "no"):
        HostKeyChecker("lab", [device]).verify(ed25519(), strict=strict)
        assert stat.S_ISCHR(device.stat().st_mode)
    real_null = Path(os.devnull)
    HostKeyChecker("lab", [real_null]).verify(ed25519(), accept_new=True)
    assert stat.S_ISCHR(real_null.stat().st_mode)


def test_a_fifo_records_nothing_and_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "known_hosts"
    os.mkfifo(fifo)
    note = HostKeyChecker("lab", [tmp_path / "other"], record_file=fifo).verify(
        ed25519(), accept_new=True)
    assert note is not None and "not a regular file" in note
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_none_records_nothing(tmp_path: Path) -> None:
    note = HostKeyChecker("lab", [], record_file=None).verify(ed25519(), accept_new=True)
    assert note is not None and "not recorded (UserKnownHostsFile none)" in note


def test_hash_known_hosts_writes_a_hashed_line_ssh_keygen_finds(tmp_path: Path) -> None:
    needs("ssh-keygen")
    path = known_hosts(tmp_path)
    key = ed25519()
    HostKeyChecker("[lab.example.com]:2222", [path], hash_names=True).verify(
        key, accept_new=True)
    line = path.read_text().strip()
    assert line.startswith("|1|") and "lab.example.com" not in line
    found = subprocess.run(["ssh-keygen", "-F", "[lab.example.com]:2222", "-f", str(path)],
                           capture_output=True, text=True, check=False)
    assert found.returncode == 0 and key.b64 in found.stdout
    HostKeyChecker("[lab.example.com]:2222", [path]).verify(key, accept_new=False)


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    path = known_hosts(tmp_path, "# shared")
    keys = [ed25519() for _ in range(24)]
    barrier = threading.Barrier(len(keys) * 2)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            checker = HostKeyChecker(f"host{index % len(keys)}", [path])
            barrier.wait(timeout=10)
            checker.verify(keys[index % len(keys)], accept_new=True)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    # Each host written by two writers at the same moment: one line each, none lost.
    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(keys) * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors
    lines = path.read_text().splitlines()
    assert lines[0] == "# shared"
    assert sorted(lines[1:]) == sorted(f"host{i} {k.line}" for i, k in enumerate(keys))


def test_two_processes_at_once_lose_nothing(tmp_path: Path) -> None:
    path = known_hosts(tmp_path)
    code = (
        "import base64, os, sys, time\n"
        "from pathlib import Path\n"
        "from remote_runtime.ssh.hostkeys import HostKeyChecker\n"
        "class K:\n"
        "    def __init__(s, b): s.b = b\n"
        "    def get_name(s): return 'ssh-ed25519'\n"
        "    def get_base64(s): return s.b\n"
        "blob = b''.join(len(p).to_bytes(4, 'big') + p for p in (b'ssh-ed25519', os.urandom(32)))\n"
        "start = float(sys.argv[3])\n"
        "while time.time() < start: pass\n"
        "HostKeyChecker(sys.argv[2], [Path(sys.argv[1])]).verify("
        "K(base64.b64encode(blob).decode()), accept_new=True)\n"
    )
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"h{i}", start],
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
             for i in range(8)]
    assert [p.wait(timeout=30) for p in procs] == [0] * 8
    names = sorted(line.split()[0] for line in path.read_text().splitlines())
    assert names == sorted(f"h{i}" for i in range(8))


# --- StrictHostKeyChecking ---------------------------------------------------------------------


def test_strict_no_records_with_a_warning_and_still_refuses_a_changed_key(
        tmp_path: Path) -> None:
    path = known_hosts(tmp_path)
    key = ed25519()
    note = HostKeyChecker("lab", [path]).verify(key, strict="no")
    assert note is not None and note.startswith("warning: StrictHostKeyChecking no")
    assert path.read_text() == f"lab {key.line}\n"
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        HostKeyChecker("lab", [path]).verify(ed25519(), strict="no")


def test_strict_accept_new_from_the_config_records(tmp_path: Path) -> None:
    path = known_hosts(tmp_path)
    key = ed25519()
    assert HostKeyChecker("lab", [path]).verify(key, strict="accept-new") is not None
    assert path.read_text() == f"lab {key.line}\n"


@pytest.mark.parametrize("strict", ["yes", "ask"])
def test_strict_yes_and_ask_without_a_terminal_refuse(tmp_path: Path, strict: str) -> None:
    with pytest.raises(HostKeyError, match="unknown host key"):
        HostKeyChecker("lab", [known_hosts(tmp_path)]).verify(ed25519(), strict=strict)


@pytest.mark.parametrize(("answer", "accepted"), [("yes", True), ("no", False), ("", False),
                                                  ("fingerprint", True), ("SHA256:x", False)])
def test_strict_ask_asks_like_openssh(tmp_path: Path, answer: str, accepted: bool) -> None:
    path = known_hosts(tmp_path)
    key = ed25519()
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return fingerprint(key.b64) if answer == "fingerprint" else answer

    checker = HostKeyChecker("lab", [path])
    if accepted:
        checker.verify(key, strict="ask", ask=ask)
        assert path.read_text() == f"lab {key.line}\n"
    else:
        with pytest.raises(HostKeyError, match="not accepted"):
            checker.verify(key, strict="ask", ask=ask)
        assert path.read_text() == ""
    assert "ED25519 key fingerprint is " + fingerprint(key.b64) in asked[0]
    assert asked[0].endswith("(yes/no/[fingerprint])? ")


def test_global_known_hosts_are_read(tmp_path: Path) -> None:
    key = ed25519()
    system = known_hosts(tmp_path, f"lab {key.line}", name="ssh_known_hosts")
    HostKeyChecker("lab", [tmp_path / "user"], global_known_hosts=[system]).verify(key)
    assert not (tmp_path / "user").exists()


# --- keys published out of band (GCE guest attributes) -------------------------------------


def test_trusted_key_is_accepted_and_recorded_under_the_alias(tmp_path: Path) -> None:
    published, older = ed25519(), ed25519()
    alias = "compute.1234567890"
    path = known_hosts(
        tmp_path, f"{alias} {older.line}", f"{alias} {(other := ecdsa()).line}", "# kept"
    )
    trusted = [(published.name, published.b64), (other.name, other.b64)]
    # A changed key in known_hosts does not matter: the published keys are authoritative.
    HostKeyChecker(alias, [path], trusted=trusted).verify(published, accept_new=False)
    lines = path.read_text().splitlines()
    assert f"{alias} {published.line}" in lines
    assert f"{alias} {older.line}" not in lines  # the same type's old entry is replaced
    assert f"{alias} {other.line}" in lines and "# kept" in lines


def test_trusted_keys_refuse_any_other_key(tmp_path: Path) -> None:
    published, impostor = ed25519(), ed25519()
    path = known_hosts(tmp_path, f"compute.1 {impostor.line}")  # even if recorded before
    before = path.read_text()
    with pytest.raises(HostKeyError) as info:
        HostKeyChecker("compute.1", [path], trusted=[(published.name, published.b64)]).verify(
            impostor, accept_new=True
        )
    assert "does not match the host keys the VM published" in info.value.message
    assert fingerprint(impostor.b64) in info.value.message
    assert path.read_text() == before


def test_revoked_wins_over_trusted(tmp_path: Path) -> None:
    key = ed25519()
    path = known_hosts(tmp_path, f"@revoked * {key.line}")
    with pytest.raises(HostKeyError, match="revoked"):
        HostKeyChecker("compute.1", [path], trusted=[(key.name, key.b64)]).verify(
            key, accept_new=False
        )


# --- algorithm preference --------------------------------------------------------------------


OFFERED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


def test_known_key_types_are_preferred(tmp_path: Path) -> None:
    rsa = paramiko.RSAKey.generate(1024)
    path = known_hosts(tmp_path, f"lab ssh-rsa {rsa.get_base64()}")
    assert HostKeyChecker("lab", [path]).preferred_key_types(OFFERED) == (
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-rsa",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
    )
    assert HostKeyChecker("new", [path]).preferred_key_types(OFFERED) == OFFERED
    key = ecdsa()
    trusted = HostKeyChecker("x", [path], trusted=[(key.name, key.b64)])
    assert trusted.preferred_key_types(OFFERED)[0] == "ecdsa-sha2-nistp256"


# --- classify: the verdict `verify` acts on, without asking or recording (doctor) -----------


def test_classify_names_each_verdict_and_the_line_it_rests_on(tmp_path: Path) -> None:
    known, changed, revoked, stranger = ed25519(), ed25519(), ed25519(), ed25519()
    path = known_hosts(tmp_path, f"lab {known.line}", f"@revoked lab {revoked.line}",
                       f"moved {changed.line}")
    checker = HostKeyChecker("lab", [path])
    verdict = checker.classify(known.name, known.b64)
    assert (verdict.status, verdict.entry.line if verdict.entry else None) == ("known", 1)
    assert checker.classify(revoked.name, revoked.b64).status == "revoked"
    assert checker.refusal(checker.classify(revoked.name, revoked.b64), revoked.name,
                           revoked.b64) is not None
    verdict = checker.classify(stranger.name, stranger.b64)
    assert verdict.status == "changed" and verdict.entry is not None and verdict.entry.line == 1
    assert HostKeyChecker("new", [path]).classify(stranger.name, stranger.b64).status == "unknown"
    other = ecdsa()  # a type with no recorded key is unknown, not changed (as OpenSSH)
    assert checker.classify(other.name, other.b64).status == "unknown"
    before = path.read_text()
    published = HostKeyChecker("compute.1", [path], trusted=[(known.name, known.b64)])
    assert published.classify(known.name, known.b64).status == "trusted"
    assert published.classify(stranger.name, stranger.b64).status == "mismatch"
    assert path.read_text() == before  # nothing recorded by judging
