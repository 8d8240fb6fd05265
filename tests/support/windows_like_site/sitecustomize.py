"""Make this Python look like Windows to remote-runtime's laptop side (the `portable` tier).

Put this directory first on PYTHONPATH and every Python started with it (the CLI,
and the supervisor it spawns) runs with:
- the POSIX-only modules unimportable (an import hook, as on Windows), except to
  psutil's Linux backend (Windows runs its Windows backend instead);
- the POSIX-only signals and process-group calls gone from `signal` and `os`, SIGHUP
  first among them (what third-party backends need, such as os.getuid, stays);
  SIGBREAK present (Ctrl-Break), numbered as SIGUSR1 so a test can send it;
- SIGTERM uncatchable: a handler for it is never installed, so SIGTERM ends the
  process at once, as TerminateProcess does on Windows (where nothing sends a
  catchable SIGTERM). A `down` that relied on SIGTERM would skip every teardown.

What it cannot imitate: sys.platform stays "linux", so code that branches on it takes
its POSIX branch here (each Windows branch has a unit test instead); filelock, without
fcntl, falls back to its soft lock (on Windows it would use LockFileEx); psutil and the
stdlib keep the signals they use internally on Linux (SIGKILL, SIGCHLD).
"""

from __future__ import annotations

import builtins
import os
import signal
import warnings

BLOCKED = frozenset({
    "fcntl", "resource", "pwd", "grp", "termios", "tty", "pty", "syslog", "crypt", "spwd",
    "nis", "readline", "curses", "_curses",
})
POSIX_SIGNALS = ("SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE", "SIGTSTP",
                 "SIGCONT", "SIGSTOP", "SIGTTIN", "SIGTTOU", "SIGWINCH")
POSIX_SIGNAL_CALLS = ("alarm", "pause", "setitimer", "getitimer", "siginterrupt",
                      "pthread_kill", "pthread_sigmask", "sigwait")
# Not getuid/geteuid: platformdirs' Unix backend reads them at import (on Windows its
# Windows backend runs); tests/unit/test_portable_source.py keeps them out of our code.
POSIX_OS_CALLS = ("killpg", "setsid", "getpgid", "setpgid", "getpgrp", "fork", "forkpty")
SIGBREAK = int(signal.SIGUSR1)


# Libraries with a backend per OS: their Linux backend may import what Windows lacks,
# because on Windows another backend runs instead (psutil's _pswindows).
OWN_BACKENDS = ("psutil",)
_import = builtins.__import__


def _blocking_import(name, globals=None, locals=None, fromlist=(), level=0):
    # Every import statement comes here, even of a module already loaded (by a backend).
    if level == 0 and name.partition(".")[0] in BLOCKED:
        importer = (globals or {}).get("__name__", "")
        if not importer.startswith(OWN_BACKENDS):
            raise ModuleNotFoundError(f"No module named {name!r} (as on Windows)", name=name)
    return _import(name, globals, locals, fromlist, level)


builtins.__import__ = _blocking_import
for _name in POSIX_SIGNALS + POSIX_SIGNAL_CALLS:
    if hasattr(signal, _name):
        delattr(signal, _name)
for _name in POSIX_OS_CALLS:
    if hasattr(os, _name):
        delattr(os, _name)
signal.SIGBREAK = SIGBREAK  # type: ignore[attr-defined]

_install = signal.signal


def _signal(signum, handler):
    if signum == signal.SIGTERM and callable(handler):
        return signal.getsignal(signum)  # as on Windows: nothing delivers it to a handler
    return _install(signum, handler)


signal.signal = _signal
# filelock warns once that it falls back to its soft lock (no fcntl); that is this
# simulation's doing, not a message a user would see.
warnings.filterwarnings("ignore", message="only soft file lock is available")
os.environ["REMOTE_RUNTIME_WINDOWS_LIKE"] = "1"
