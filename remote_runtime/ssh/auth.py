"""Log in as OpenSSH would: public keys, then keyboard-interactive, then password.

The methods run in OpenSSH's default order, limited to those the server
allows (learnt from a `none` request) and the config enables
(PubkeyAuthentication, KbdInteractiveAuthentication, PasswordAuthentication),
following partial success (AuthenticationMethods publickey,keyboard-interactive
for a 2FA host). Keys come from `identities` in OpenSSH's order with the
profile's key first. Prompts (passphrases, one-time codes, passwords) go to the
caller's prompter with the server's text as sent; without one (no terminal,
BatchMode yes) a method that needs a person fails with one line saying so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import paramiko

from ..errors import AuthenticationError, SSHError
from . import identities
from .config import Target, agent_socket
from .prompts import Prompter, visible

METHODS = ("publickey", "keyboard-interactive", "password")
SK_HINT = ("paramiko cannot sign with FIDO security keys: give this host a key without one "
           "(ssh.identity_file; ssh-keygen -t ed25519), or load an ordinary key into ssh-agent")


@dataclass
class LoginReport:
    """What a login saw (`diagnose`): the methods the server allows, the keys in the
    order offered, which the server refused and which it accepted."""

    allowed: list[str] = field(default_factory=list)  # from the `none` request
    offered: list[str] = field(default_factory=list)  # every key, in the order planned
    refused: list[str] = field(default_factory=list)  # keys, or methods, the server refused
    accepted: list[str] = field(default_factory=list)  # what it accepted (partial success too)
    notes: list[str] = field(default_factory=list)  # keys skipped, and why
    error: AuthenticationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Login:
    def __init__(self, transport: paramiko.Transport, target: Target,
                 prompter: Prompter | None):
        self.transport = transport
        self.target = target
        self.prompter = None if target.batch_mode else prompter
        self.tried: list[str] = []
        self.notes: list[str] = []
        self.needs_person: list[str] = []
        self.allowed: list[str] = []
        self.offered: list[str] = []
        self.accepted: list[str] = []

    @property
    def who(self) -> str:
        return f"{self.target.user}@{self.target.hostname}"

    def run(self) -> None:
        allowed = self._none()
        if allowed is None:
            self.accepted.append("none")
            return
        self.allowed = list(allowed)
        done: set[str] = set()
        while True:
            method = next((m for m in METHODS if m in allowed and m not in done
                           and self._enabled(m)), None)
            if method is None:
                break
            done.add(method)
            result = getattr(self, "_" + method.replace("-", "_"))()
            if self.transport.is_authenticated():
                return
            if result:  # partial success: the server asks for another method next
                allowed = list(result)
                done.discard("keyboard-interactive")
                done.discard("password")
        self._fail(allowed)

    def _enabled(self, method: str) -> bool:
        return {"publickey": self.target.pubkey_auth,
                "keyboard-interactive": self.target.kbd_interactive_auth,
                "password": self.target.password_auth}[method]

    def _none(self) -> list[str] | None:
        try:
            self.transport.auth_none(self.target.user)
        except paramiko.BadAuthenticationType as exc:
            return list(exc.allowed_types)
        except paramiko.AuthenticationException:
            return list(METHODS)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc) from None
        return None if self.transport.is_authenticated() else list(METHODS)

    def _lost(self, exc: BaseException) -> SSHError:
        return SSHError(f"SSH connection to {self.target.alias} failed during login: "
                        f"{exc or type(exc).__name__}")

    # -- methods ----------------------------------------------------------------------------

    def _publickey(self) -> Sequence[str]:
        target = self.target
        agent, why_not = identities.open_agent(
            agent_socket(target), system_default=target.identity_agent == "SSH_AUTH_SOCK")
        if why_not:
            self.notes.append(why_not)
        try:
            keys = list(agent.get_keys()) if agent is not None else []
            ordered, notes = identities.plan(
                list(target.identity_files), list(target.certificate_files), keys,
                identities_only=target.identities_only,
                profile_identity=target.profile_identity)
            self.notes += notes
            self.offered += [identity.label for identity in ordered]
            for identity in ordered:
                result = self._offer(identity)
                if self.transport.is_authenticated() or result:
                    return result
        finally:
            if agent is not None:
                with contextlib.suppress(Exception):  # closing a broken agent socket
                    agent._close()  # type: ignore[attr-defined]
        return []

    def _offer(self, identity: identities.Identity) -> Sequence[str]:
        if identity.is_sk and identity.agent_key is None:
            self.notes.append(f"skipped FIDO key {identity.label} ({identity.key_type}): "
                              + SK_HINT)
            return []
        if identity.agent_key is None and identity.path is not None and \
                identity.path.suffix == ".pub" and identity.cert is None:
            self.notes.append(f"skipped {identity.label}: a public key whose private key "
                              "is not in the agent")
            return []
        try:
            key = identities.signer(identity, self.prompter, self.target.password_prompts)
        except AuthenticationError as exc:
            self.notes.append(exc.message)
            return []
        except SSHError as exc:
            self.notes.append(exc.message)
            return []
        try:
            result = self.transport.auth_publickey(self.target.user, key)
        except paramiko.AuthenticationException:
            self.tried.append(identity.label)
            return []
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc) from None
        self.accepted.append(identity.label)
        return result or []

    def _keyboard_interactive(self) -> Sequence[str]:
        prompter = self.prompter
        if prompter is None:
            self.needs_person.append("keyboard-interactive")
            return []
        cancelled: list[BaseException] = []

        def handler(title: str, instructions: str,
                    prompts: Sequence[tuple[str, bool]]) -> list[str]:
            if cancelled:
                return ["" for _ in prompts]
            try:
                if title.strip():
                    prompter.show(visible(title))
                if instructions.strip():
                    prompter.show(visible(instructions))
                return [prompter.ask(visible(text), echo=echo) for text, echo in prompts]
            except (KeyboardInterrupt, EOFError) as exc:
                cancelled.append(exc)
                return ["" for _ in prompts]

        result: Sequence[str] = []
        for _ in range(max(1, self.target.password_prompts)):
            try:
                result = self.transport.auth_interactive(self.target.user, handler)
            except paramiko.BadAuthenticationType:
                return []
            except paramiko.AuthenticationException:
                if cancelled:
                    break
                self.tried.append("keyboard-interactive")
                continue
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._lost(exc) from None
            self.accepted.append("keyboard-interactive")
            break
        if cancelled:
            raise KeyboardInterrupt
        return result or []

    def _password(self) -> Sequence[str]:
        prompter = self.prompter
        if prompter is None:
            self.needs_person.append("password")
            return []
        for _ in range(max(1, self.target.password_prompts)):
            password = prompter.ask(f"{self.who}'s password: ", echo=False)
            try:
                result = self.transport.auth_password(self.target.user, password,
                                                      fallback=False)
            except paramiko.BadAuthenticationType:
                return []
            except paramiko.AuthenticationException:
                self.tried.append("password")
                continue
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._lost(exc) from None
            self.accepted.append("password")
            return result or []
        return []

    # -- failure ----------------------------------------------------------------------------

    def _fail(self, allowed: Sequence[str]) -> None:
        notes = "; ".join(dict.fromkeys(self.notes))
        if self.needs_person:
            why = "BatchMode yes" if self.target.batch_mode else "there is no terminal"
            method = " or ".join(dict.fromkeys(self.needs_person))
            raise AuthenticationError(
                f"{self.who} asks for {method} authentication (a password or one-time "
                f"code) and {why} to answer it" + (f" ({notes})" if notes else ""),
                hint="run `remote-runtime up` from a terminal (add --detach to keep it "
                "running in the background)")
        what = ", ".join(self.tried) if self.tried else "no key found"
        offered = [m for m in allowed if m in METHODS]
        keys_only = all(t not in ("keyboard-interactive", "password") for t in self.tried)
        raise AuthenticationError(
            f"{self.who} refused " + ("every key" if keys_only else "the login")
            + f" ({what})" + (f"; {notes}" if notes else "")
            + (f"; the server allows: {', '.join(allowed)}" if not offered else ""),
            hint=SK_HINT if any("FIDO" in n for n in self.notes) and not self.tried else
            "check ssh.user and ssh.identity_file in the profile, or load the key into "
            "ssh-agent (`ssh -v HOST` shows what OpenSSH offers)",
        )


def authenticate(transport: paramiko.Transport, target: Target,
                 prompter: Prompter | None) -> None:
    """Log in on `transport` as `target.user`; raises AuthenticationError with one line.

    Raises KeyboardInterrupt when the person at the prompt gives up.
    """
    _Login(transport, target, prompter).run()


def diagnose(transport: paramiko.Transport, target: Target,
             prompter: Prompter | None) -> LoginReport:
    """Log in as `authenticate` does and say what happened, refused or not (`doctor`).

    Raises SSHError when the connection drops, KeyboardInterrupt as `authenticate`.
    """
    login = _Login(transport, target, prompter)
    error: AuthenticationError | None = None
    try:
        login.run()
    except AuthenticationError as exc:
        error = exc
    return LoginReport(allowed=login.allowed, offered=login.offered, refused=login.tried,
                       accepted=login.accepted, notes=list(dict.fromkeys(login.notes)),
                       error=error)
