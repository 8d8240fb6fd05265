"""`procs` on real processes: liveness (zombies are dead), start time, command line,
terminate-then-kill for a PID and for a child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from remote_runtime import procs

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
    "print('ready', flush=True); time.sleep(60)"


def sleeper(code: str = "import time; print('ready', flush=True); time.sleep(60)"
            ) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_alive_start_time_and_cmdline_of_a_live_process() -> None:
    proc = sleeper()
    try:
        assert procs.alive(proc.pid)
        started = procs.start_time(proc.pid)
        assert started is not None and abs(started - time.time()) < 60
        assert procs.cmdline(proc.pid)[0] == sys.executable
    finally:
        proc.kill()
        proc.wait()
    assert not procs.alive(proc.pid)
    assert procs.cmdline(proc.pid) == []
    assert procs.start_time(proc.pid) is None


def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    psutil.Process(proc.pid).wait(timeout=10)  # exited, not reaped: a zombie
    try:
        assert not procs.alive(proc.pid)
    finally:
        proc.wait()


def test_nonsense_pids_are_not_alive() -> None:
    assert not procs.alive(0)
    assert not procs.alive(-1)


def test_stop_pid_terminates_or_kills() -> None:
    polite = sleeper()
    assert procs.stop_pid(polite.pid, timeout=5) is True or polite.poll() is not None
    polite.wait(timeout=5)
    stubborn = sleeper(IGNORES_TERM)
    started = time.monotonic()
    assert procs.stop_pid(stubborn.pid, timeout=0.5) is False  # it had to be killed
    assert stubborn.wait(timeout=5) == -9
    assert time.monotonic() - started < 10


def test_stop_child_reaps_and_reports_a_kill() -> None:
    polite = sleeper()
    assert procs.stop_child(polite) is True
    assert polite.returncode is not None
    stubborn = sleeper(IGNORES_TERM)
    assert procs.stop_child(stubborn, timeout=0.5) is False
    assert stubborn.returncode == -9
    assert procs.stop_child(stubborn) is True  # already gone


def test_wait_gone_times_out_on_a_live_process() -> None:
    proc = sleeper()
    try:
        assert procs.wait_gone(proc.pid, 0.2) is False
    finally:
        proc.kill()
        proc.wait()
    assert procs.wait_gone(proc.pid, 0.2) is True
    assert procs.alive(os.getpid())


# --- per OS -----------------------------------------------------------------------------------


class _Posix:
    SIGTERM, SIGHUP, SIGINT = 15, 1, 2


class _Windows:  # Python's signal module on Windows: no SIGHUP, a SIGBREAK
    SIGTERM, SIGINT, SIGBREAK = 15, 2, 21


def test_stopping_signals_per_os() -> None:
    assert procs.stopping_signals(_Posix) == (15, 1)
    assert procs.stopping_signals(_Windows) == (15, 21)
    assert procs.stopping_signals() == (signal.SIGTERM, signal.SIGHUP)  # this machine


# A parent that leaves a child behind when it is terminated, as cmd.exe running
# gcloud.cmd leaves gcloud's Python on Windows (TerminateProcess ends one process).
PARENT_OF_ONE = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True); time.sleep(60)\n"
)


def _parent_and_child() -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT_OF_ONE], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def test_stop_child_on_windows_also_ends_the_childs_children() -> None:
    parent, child = _parent_and_child()
    assert procs.stop_child(parent, timeout=5, windows=True)
    assert procs.wait_gone(child, 5), "the grandchild survived"


def test_stop_child_on_posix_leaves_the_process_group_to_signals() -> None:
    parent, child = _parent_and_child()
    try:
        assert procs.stop_child(parent, timeout=5, windows=False)
        assert procs.alive(child)  # POSIX: a signal to the group reaches it; not our job here
    finally:
        procs.kill(child)
        procs.wait_gone(child, 5)
