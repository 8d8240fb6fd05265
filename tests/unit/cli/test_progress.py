"""The CLI's progress view: lines for messages, one bar for the steps of an install; and
the supervisor relaying steps to the terminal that ran `up --detach`."""

from __future__ import annotations

import io
import json

from rich.console import Console

from remote_runtime import supervisor
from remote_runtime.cli.progress import ProgressView
from remote_runtime.options import Step

TASK = "installing the classic Jupyter stack"


def steps(total: int) -> list[Step]:
    return [Step(TASK, done, total, f"package-{done}") for done in range(total + 1)]


def test_a_log_gets_one_finished_line_per_install_not_one_per_package() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, force_terminal=False, width=120))
    view("checking the remote host")
    for step in steps(40):
        view(step)
    view("starting Jupyter on port 8888")
    lines = out.getvalue().splitlines()
    assert lines[0] == "- checking the remote host"
    bar = [line for line in lines if TASK in line]
    assert len(bar) == 1 and "40/40" in bar[0]
    assert lines[-1] == "- starting Jupyter on port 8888"
    assert "package-" not in out.getvalue()


def test_on_a_terminal_the_bar_redraws_in_place() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, force_terminal=True, width=120))
    for step in steps(5):
        view(step)
    text = out.getvalue()
    assert "\r" in text or "\x1b[" in text  # cursor control: the same line, redrawn
    assert text.count("\n") <= 2


def test_an_unfinished_bar_ends_where_it_stood() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, force_terminal=False, width=120))
    for step in steps(10)[:4]:
        view(step)
    view.finish()  # the build failed: the error follows below the bar
    view.finish()  # and again is harmless
    assert "3/10" in out.getvalue()


def test_a_step_is_text_for_plain_callbacks() -> None:
    step = Step(TASK, 3, 10, "tornado 6.4.2")
    assert step == f"{TASK}: 3/10 tornado 6.4.2" and not step.finished
    assert Step(TASK, 10, 10).finished


def test_the_supervisor_relays_steps_and_logs_only_the_ends() -> None:
    stdout, log = io.StringIO(), io.StringIO()

    class Log:  # the supervisor's log file writes a line per call
        def write(self, text: str) -> None:
            log.write(f"{text}\n")

    channel = supervisor._Channel(stdout, Log())  # type: ignore[arg-type]
    for step in steps(3):
        channel.progress(step)
    sent = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [m["step"]["done"] for m in sent] == [0, 1, 2, 3]
    assert Step(**sent[2]["step"]) == steps(3)[2]
    assert len(log.getvalue().splitlines()) == 2  # the start and the end of the task
