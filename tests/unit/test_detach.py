"""How a detached supervisor is started on each OS (remote_runtime/detach.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from remote_runtime import detach


def test_posix_starts_a_new_session() -> None:
    assert detach.detach_options(windows=False) == [{"start_new_session": True}]
    child = detach._start_detached(
        [sys.executable, "-c", "import os; print(os.getsid(0), flush=True)"],
        windows=False, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    out, _ = child.communicate(timeout=30)
    assert int(out) == child.pid != os.getsid(0)  # its own session, led by itself


def test_windows_detaches_from_the_console_into_its_own_group_and_out_of_the_job() -> None:
    first, second = detach.detach_options(windows=True)
    detached = detach.DETACHED_PROCESS | detach.CREATE_NEW_PROCESS_GROUP
    assert first == {"creationflags": detached | detach.CREATE_BREAKAWAY_FROM_JOB}
    assert second == {"creationflags": detached}
    # The values WinBase.h defines (subprocess has them only on Windows).
    assert (detach.DETACHED_PROCESS, detach.CREATE_NEW_PROCESS_GROUP,
            detach.CREATE_BREAKAWAY_FROM_JOB) == (0x8, 0x200, 0x1000000)


def test_windows_falls_back_when_the_job_forbids_breakaway() -> None:
    tried: list[dict[str, Any]] = []

    def popen(argv: list[str], **kwargs: Any) -> Any:
        tried.append(kwargs)
        if kwargs["creationflags"] & detach.CREATE_BREAKAWAY_FROM_JOB:
            raise PermissionError(13, "Access is denied")  # ERROR_ACCESS_DENIED
        return "started"

    assert detach._start_detached(["x"], windows=True, popen=popen, text=True) == "started"
    assert [t["creationflags"] & detach.CREATE_BREAKAWAY_FROM_JOB for t in tried] == [
        detach.CREATE_BREAKAWAY_FROM_JOB, 0]
    assert all(t["text"] is True for t in tried)

    def refuse(argv: list[str], **kwargs: Any) -> Any:
        raise PermissionError(13, "Access is denied")

    with pytest.raises(PermissionError):
        detach._start_detached(["x"], windows=True, popen=refuse)
