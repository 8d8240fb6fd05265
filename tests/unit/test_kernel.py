"""Choosing the kernel's Python on the remote: the agent's answer, and what each
`kernel.install_ipykernel` policy does when that Python has no ipykernel - through a real
login shell and the real agent (support.shells)."""

from __future__ import annotations

import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.shells import LocalShellSession, chatty_home

from remote_runtime import kernel
from remote_runtime.errors import ExitCode, RemoteSetupError
from remote_runtime.profiles import KernelSettings
from remote_runtime.ssh import Session


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    local = LocalShellSession("/bin/bash", chatty_home(tmp_path))
    yield local  # type: ignore[misc]
    local.close()


def prepare(session: Session, settings: KernelSettings, *, confirm: kernel.Confirm | None = None
            ) -> tuple[kernel.KernelChoice, list[str]]:
    said: list[str] = []
    choice = kernel.prepare(session, settings, agent_python=sys.executable, workdir="~",
                            confirm=confirm, progress=said.append)
    return choice, said


def bare_python(tmp_path: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(tmp_path / "bare")
    return tmp_path / "bare" / "bin" / "python"


def test_a_python_with_ipykernel_is_chosen_and_described(session: Session) -> None:
    choice, said = prepare(session, KernelSettings(python=sys.executable, setup=("true",)))
    assert choice.python == sys.executable and choice.why == "kernel.python"
    assert choice.prefix == sys.prefix and choice.setup == ("true",)
    assert choice.to_agent() == {"python": sys.executable, "setup": ["true"],
                                 "prefix": sys.prefix}
    assert said[-1] == f"kernel: {sys.executable} (Python {choice.version}; kernel.python)"


@pytest.mark.parametrize(("policy", "confirm", "hint"), [
    ("no", None, "install it, set kernel.install_ipykernel: yes"),
    ("ask", None, "there is no terminal to ask on (CI, a pipe, a reconnect)"),
    ("ask", False, "install it yourself"),
])
def test_without_ipykernel_the_error_names_the_command(
        session: Session, tmp_path: Path, policy: str, confirm: bool | None, hint: str) -> None:
    python = bare_python(tmp_path)
    asked: list[str] = []

    def answer(question: str) -> bool:
        asked.append(question)
        return bool(confirm)

    with pytest.raises(RemoteSetupError) as info:
        prepare(session, KernelSettings(python=str(python), install_ipykernel=policy),
                confirm=None if confirm is None else answer)
    assert info.value.exit_code == ExitCode.REMOTE_SETUP
    assert info.value.message == (f"the kernel's Python {python} has no ipykernel; "
                                  f"install it with: {python} -m pip install ipykernel")
    assert info.value.hint is not None and info.value.hint.startswith(hint)
    if confirm is not None:
        (question,) = asked
        assert question.startswith(f"The kernel's Python {python} (Python ")
        assert question.endswith(f"Install it there now ({python} -m pip install ipykernel)?")


def test_a_failed_install_says_what_pip_said(session: Session, tmp_path: Path) -> None:
    python = bare_python(tmp_path)  # no pip in it: the install cannot work
    with pytest.raises(RemoteSetupError) as info:
        prepare(session, KernelSettings(python=str(python)), confirm=lambda _: True)
    assert info.value.message.startswith(f"installing ipykernel into {python} failed")
    assert "No module named pip" in (info.value.details or "")
    assert "venv or conda env" in (info.value.hint or "")


def test_a_setup_line_that_fails_is_the_error(session: Session) -> None:
    with pytest.raises(RemoteSetupError, match=r"kernel.setup line 1 failed \(exit status 1\)"):
        prepare(session, KernelSettings(python=sys.executable, setup=("test -d /no/such",)))


class Terminal:
    """A `ssh.Prompter` that answers from a list and records what it was asked."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, bool]] = []

    def ask(self, prompt: str, *, echo: bool) -> str:
        self.asked.append((prompt, echo))
        answer = self.answers.pop(0)
        if answer is None:
            raise EOFError
        return answer

    def show(self, text: str) -> None:
        raise AssertionError("nothing to show")


def test_the_question_goes_through_the_prompter() -> None:
    assert kernel.asking(None) is None  # nobody to ask: the policy's error instead
    terminal = Terminal("y", "YES ", "n", "", None)
    confirm = kernel.asking(terminal)
    assert confirm is not None
    assert [confirm("Install?") for _ in range(5)] == [True, True, False, False, False]
    assert terminal.asked[0] == ("Install? [y/N] ", True)


def test_where_auto_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kernel.auto_search() == ["/opt/conda/bin/python"]
    monkeypatch.setenv(kernel.AUTO_ENV, "/a/bin/python::/b/bin/python")
    assert kernel.auto_search() == ["/a/bin/python", "/b/bin/python"]
    monkeypatch.setenv(kernel.AUTO_ENV, "")
    assert kernel.auto_search() == []


def test_find_installs_nothing(session: Session, tmp_path: Path) -> None:
    """`doctor`'s question: which Python, and has it ipykernel; the answer changes nothing."""
    python = bare_python(tmp_path)
    said: list[str] = []
    for policy in ("yes", "ask", "no"):
        choice, has = kernel.find(session, KernelSettings(python=str(python),
                                                          install_ipykernel=policy),
                                  agent_python=sys.executable, workdir="~",
                                  progress=said.append)
        assert (choice.python, choice.why, has) == (str(python), "kernel.python", False)
    assert not list((tmp_path / "bare" / "lib").glob("python*/site-packages/ipykernel"))
    choice, has = kernel.find(session, KernelSettings(python=sys.executable),
                              agent_python=sys.executable, workdir="~", progress=said.append)
    assert has and choice.executable == sys.executable
