"""RemoteHost's choice of a Jupyter (existing or managed, classic or modern), and what it
says when a Python cannot host the server. The session is a fake: these decisions are
made from the probe alone, before anything else runs on the host."""

from __future__ import annotations

import json
from typing import Any

import pytest

from remote_runtime import bootstrap, provision, remote
from remote_runtime.errors import RemoteSetupError
from remote_runtime.options import Step
from remote_runtime.profiles import JupyterSettings


def probe(version: tuple[int, int], *, candidates: list[dict[str, Any]] | None = None,
          others: list[dict[str, Any]] | None = None) -> remote.Probe:
    return remote.Probe(
        python=f"/usr/bin/python{version[0]}.{version[1]}", version=version, uid=1000,
        user="alice", home="/home/alice", base="/home/alice/.cache/remote-runtime",
        candidates=candidates or [], free_ports=[8888], other_pythons=others or [])


class Process:
    """A remote agent that answers ensure-managed with the lines given."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        # The agent line (bootstrap.agent_line) comes first, then the agent's output mark.
        self.agent_line = ""
        self.answers = [bootstrap.OUTPUT_MARK, *(json.dumps(a) for a in answers)]
        self.written: list[dict[str, Any]] = []
        self.closed = False

    def write_line(self, line: str) -> None:
        if not self.agent_line:
            self.agent_line = line
            return
        self.written.append(json.loads(line))

    def read_line(self, timeout: float) -> str | None:
        return self.answers.pop(0) if self.answers else None

    def read_stderr(self) -> str:
        return ""

    def close(self) -> None:
        self.closed = True


class Session:
    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.process = Process(answers)
        self.commands: list[str] = []

    def start(self, command: str) -> Process:
        self.commands.append(command)
        return self.process


def host(answers: list[dict[str, Any]] | None = None, **settings: Any) -> remote.RemoteHost:
    return remote.RemoteHost(Session(answers or []), JupyterSettings(**settings))  # type: ignore[arg-type]


def ensure(found: remote.Probe, progress: Any = lambda _: None,
           answers: list[dict[str, Any]] | None = None, **settings: Any) -> Any:
    return provision.ensure_stack(host(answers, **settings), found, progress)


CLASSIC = {"path": "/opt/conda/bin/jupyter", "argv": ["/opt/conda/bin/jupyter"], "ok": True,
           "stacks": ["classic", "modern"]}
MODERN = {"path": "/opt/conda/bin/jupyter", "argv": ["/opt/conda/bin/jupyter"], "ok": True,
          "stacks": ["modern"]}
NONE = {"path": "jupyter", "ok": False, "stacks": [], "reason": "not found"}


def test_an_existing_jupyter_is_used_as_it_is() -> None:
    lines: list[str] = []
    chosen = ensure(probe((3, 10), candidates=[NONE, CLASSIC]), lines.append, env="auto")
    assert chosen == provision.ServerStack(["/opt/conda/bin/jupyter"], "classic", "existing")
    assert lines == ["using the existing Jupyter at /opt/conda/bin/jupyter "
                     "(classic stack: websocket and direct routes)"]
    # A Deep Learning VM's JupyterLab (Jupyter Server 2, no extension): no install.
    chosen = ensure(probe((3, 10), candidates=[MODERN]), lines.append, env="auto")
    assert chosen.stack == "modern" and chosen.routes == ("cors",)
    assert chosen.source == "existing"


def test_stack_classic_never_takes_a_modern_jupyter() -> None:
    with pytest.raises(RemoteSetupError, match="can load jupyter_http_over_ws") as raised:
        ensure(probe((3, 10), candidates=[MODERN]), env="existing", stack="classic")
    assert "env: managed" in (raised.value.hint or "")


def test_the_managed_build_gets_the_lock_and_reports_counted_steps() -> None:
    answers = [{"building": True},
               {"step": {"task": "installing the classic Jupyter stack", "done": 0,
                         "total": 86, "detail": "creating the venv"}},
               {"step": {"task": "installing the classic Jupyter stack", "done": 86,
                         "total": 86, "detail": "ready"}},
               {"ok": True, "jupyter": "/c/envs/x/bin/jupyter"}]
    rh = host(answers, env="managed")
    seen: list[str] = []
    chosen = provision.ensure_stack(rh, probe((3, 11)), seen.append)
    assert chosen == provision.ServerStack(["/c/envs/x/bin/jupyter"], "classic", "managed")
    sent = rh.session.process.written[0]  # type: ignore[attr-defined]
    assert sent["name"].startswith("classic-py311-") and sent["enable_extension"] is True
    assert sent["bootstrap"].startswith("pip==") and "--hash=sha256:" in sent["lock"]
    assert sent["count"] == sent["lock"].count("==")
    steps = [s for s in seen if isinstance(s, Step)]
    assert [(s.done, s.total) for s in steps] == [(0, 86), (86, 86)] and steps[-1].finished
    assert any("building it on the remote host" in s for s in seen)


def test_a_failed_build_is_one_error_with_pip_s_tail_as_details() -> None:
    answers = [{"error": "-m pip install exited with status 1",
                "log": "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS"}]
    with pytest.raises(RemoteSetupError, match="building the managed Jupyter environment "
                       "failed: -m pip install exited with status 1") as raised:
        ensure(probe((3, 11)), answers=answers, env="managed")
    assert "DO NOT MATCH THE HASHES" in (raised.value.details or "")


@pytest.mark.parametrize("version", [(3, 6), (3, 7)])
def test_too_old_names_the_best_interpreter_on_the_host(version: tuple[int, int]) -> None:
    others = [{"path": "/usr/bin/python3.9", "version": [3, 9]},
              {"path": "/opt/py/bin/python3.99", "version": [3, 99]},  # newer, no lock
              {"path": "/usr/local/bin/python3.12", "version": [3, 12]}]
    with pytest.raises(RemoteSetupError) as raised:
        ensure(probe(version, others=others), env="managed")
    message = raised.value.message
    assert message.startswith(f"Python {version[0]}.{version[1]} (/usr/bin/python"
                              f"{version[0]}.{version[1]}) cannot host the Jupyter server: "
                              "it needs Python 3.8 or newer; ")
    # the newest with a tested classic set, so that `up` then gets both routes
    assert message.endswith("this host has Python 3.12: set jupyter.python: "
                            "/usr/local/bin/python3.12 in the profile")
    assert raised.value.exit_code == 6 and "\n" not in message


def test_too_old_without_another_python_says_what_to_install() -> None:
    with pytest.raises(RemoteSetupError, match="none was found on the host") as raised:
        ensure(probe((3, 6)), env="managed")
    assert "python3.8 or newer" in (raised.value.hint or "")


def test_a_too_old_python_still_drives_an_existing_jupyter() -> None:
    chosen = ensure(probe((3, 6), candidates=[CLASSIC]), env="auto")
    assert chosen.source == "existing"


def test_stack_classic_on_a_python_without_a_classic_set_is_refused() -> None:
    with pytest.raises(RemoteSetupError, match=r"no tested version set for Python 3\.99") as raised:
        ensure(probe((3, 99)), env="managed", stack="classic")
    assert "jupyter.stack: auto" in (raised.value.hint or "")
