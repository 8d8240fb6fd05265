"""Stage `ssh`: the handshake, the host key (judged as `up` judges it, never recorded),
the login methods the server offers, and which of the user's keys it accepts."""

from __future__ import annotations

from ..errors import SSHError
from ..ssh import probe
from ..ssh.auth import LoginReport
from ..ssh.probe import HostKey
from .walk import Walk

STAGE = "ssh"


def run(walk: Walk) -> None:
    if walk.blocked(STAGE) or walk.link is None:
        return
    try:
        shake = probe.handshake(walk.link)
    except SSHError as exc:
        walk.fail(STAGE, "handshake", exc.message,
                  "the server may not speak a key exchange or cipher paramiko knows; "
                  "`ssh -v HOST` shows what OpenSSH agrees with it",
                  stops="the SSH handshake failed")
        return
    walk.shake = shake
    walk.ok(STAGE, "handshake", f"{shake.server_version}; cipher {shake.cipher}")
    if not _host_key(walk, shake.host_key):
        return
    try:
        login = probe.login(shake, walk.prompter)
    except SSHError as exc:
        walk.fail(STAGE, "login", exc.message, stops="the connection dropped during login")
        return
    _methods(walk, login)
    if not _login(walk, login):
        return
    walk.session = probe.session(shake)
    walk.closing(walk.session.close)


def _host_key(walk: Walk, key: HostKey) -> bool:
    """The host key as `up` would judge it; False (and the walk stopped) when refused."""
    offered = f"{key.key_type} {key.fingerprint}"
    status, entry = key.verdict.status, key.verdict.entry
    if key.refusal is not None:
        walk.fail(STAGE, "host key", key.refusal.message, key.refusal.hint or "",
                  stops="the host key is refused")
        return False
    if status == "known" and entry is not None:
        walk.ok(STAGE, "host key", f"{offered} matches {entry.path} line {entry.line} "
                f"({key.name})")
        return True
    if status == "trusted":
        walk.ok(STAGE, "host key", f"{offered} is one the VM published in its guest "
                f"attributes ({key.name})")
        return True
    where = key.record_file or "no file (UserKnownHostsFile none)"
    if key.strict in ("accept-new", "no") or walk.options.accept_new_host_key:
        why = ("--accept-new-host-key" if walk.options.accept_new_host_key
               else f"StrictHostKeyChecking {key.strict}")
        walk.warn(STAGE, "host key", f"unknown host key for {key.name}: {offered}; `up` "
                  f"records it in {where} ({why}); doctor recorded nothing",
                  "check the fingerprint with the host's owner")
        return True
    walk.fail(STAGE, "host key", f"unknown host key for {key.name}: {offered}",
              "check the fingerprint with the host's owner, then `remote-runtime up "
              f"{walk.profile.name if walk.profile else 'NAME'} --accept-new-host-key` "
              f"records it in {where}", stops="the host key is not known yet")
    return False


def _methods(walk: Walk, login: LoginReport) -> None:
    if login.allowed:
        walk.ok(STAGE, "auth methods", f"the server offers {', '.join(login.allowed)}")
    elif "none" in login.accepted:
        walk.warn(STAGE, "auth methods", "the server let us in without authenticating")


def _login(walk: Walk, login: LoginReport) -> bool:
    target = walk.link.target if walk.link is not None else None
    who = f"{target.user}@{target.hostname}" if target is not None else "the host"
    accepted = [a for a in login.accepted if a != "none"]
    untried = [k for k in login.offered if k not in login.refused and k not in accepted]
    refused = f"; refused first: {', '.join(login.refused)}" if login.refused else ""
    skipped = f"; skipped: {'; '.join(login.notes)}" if login.notes else ""
    if login.error is None:
        if accepted:
            later = f"; not needed: {', '.join(untried)}" if untried else ""
            walk.ok(STAGE, "login", f"{who} accepted {' then '.join(accepted)}"
                    f"{refused}{later}{skipped}")
        else:
            walk.ok(STAGE, "login", f"logged in as {who}")
        return True
    unsaid = [k for k in login.offered if k not in login.error.message]
    offered = f" (also offered: {', '.join(unsaid)})" if unsaid else ""
    walk.fail(STAGE, "login", f"{login.error.message}{offered}", _login_fix(walk, login),
              stops="the login was refused")
    return False


def _login_fix(walk: Walk, login: LoginReport) -> str:
    error = login.error
    assert error is not None
    profile = walk.profile
    if profile is not None and profile.gce is not None:
        return ("the VM may not have your key yet: `remote-runtime up` adds it to the "
                "metadata (or OS Login) and waits for the guest agent to install it")
    if "publickey" not in login.allowed and login.allowed:
        return (f"the server does not take keys (it offers {', '.join(login.allowed)}); "
                "run doctor from a terminal to answer its prompts")
    target = walk.link.target if walk.link is not None else None
    if "asks for" in error.message or target is None:  # a person must answer
        return error.hint or ""
    key = str(target.profile_identity or (target.identity_files[0] if target.identity_files
                                          else "~/.ssh/id_ed25519"))
    return (f"add {key}.pub to ~{target.user}/.ssh/authorized_keys on the host (ssh-copy-id "
            f"-i {key} {target.user}@{target.hostname}), or set ssh.identity_file to a key "
            "it accepts")
