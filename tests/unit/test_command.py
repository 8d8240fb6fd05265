"""`run NAME -- CMD`: the command found as the OS's shell would find it
(remote_runtime/command.py)."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from remote_runtime import command


def test_windows_finds_scripts_on_path_first(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "npm"  # npm.cmd on Windows; which() applies PATHEXT there
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert command.program(["npm", "test"], windows=True) == [str(tool), "test"]
    assert command.program(["npm", "test"], windows=False) == ["npm", "test"]  # exec searches
    assert command.program(["missing", "x"], windows=True) == ["missing", "x"]  # the OS says why
    assert command.program([], windows=True) == []


def test_the_wait_wakes_for_an_interrupt_from_another_thread() -> None:
    """A stop request interrupts the main thread; a plain wait() would sleep through it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    timer = threading.Timer(0.5, _thread.interrupt_main)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            command._wait(child)
    finally:
        child.kill()
        child.wait()
    assert command._wait(child) == -9
