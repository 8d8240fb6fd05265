"""The laptop side stays portable, read from the source (AST), like test_architecture.py.

Every module but the remote agent (which runs on the Linux remote):
- reads no /proc and never calls os.kill(pid, 0) (on Windows that ends the process);
  process facts go through `procs` (psutil);
- imports a POSIX-only module (fcntl, resource, pwd, termios, ...) only inside a
  `try` that handles its ImportError;
- names a POSIX-only signal or os call (signal.SIGHUP, os.killpg, os.getuid, ...) only
  inside such a `try` (or one handling AttributeError); `getattr`/`hasattr` with a
  string are the other way to reach them.
The portable tier (tests/portable) runs the code with those names gone; this catches
the paths it does not run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.env import REPO_ROOT

PACKAGE = REPO_ROOT / "remote_runtime"
POSIX_MODULES = {"fcntl", "resource", "pwd", "grp", "termios", "tty", "pty", "syslog", "crypt",
                 "spwd", "nis", "readline", "curses", "posix"}
POSIX_SIGNALS = {"SIGHUP", "SIGKILL", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE",
                 "SIGCHLD", "SIGTSTP", "SIGCONT", "SIGSTOP", "SIGTTIN", "SIGTTOU", "SIGWINCH"}
POSIX_SIGNAL_CALLS = {"alarm", "pause", "setitimer", "getitimer", "siginterrupt", "pthread_kill",
                      "pthread_sigmask", "sigwait"}
POSIX_OS_CALLS = {"killpg", "setsid", "getsid", "getpgid", "setpgid", "getpgrp", "fork",
                  "forkpty", "getuid", "geteuid", "getgid", "getegid", "setuid", "chown",
                  "lchown"}
GUARDS = {"ImportError", "ModuleNotFoundError", "AttributeError", "Exception", "BaseException"}


def laptop_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "agent" not in p.relative_to(PACKAGE).parts)


def _handled(node: ast.Try) -> set[str]:
    names: set[str] = set()
    for handler in node.handlers:
        kinds = handler.type
        items = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
        for item in items:
            if isinstance(item, ast.Name):
                names.add(item.id)
            elif item is None:
                names.add("BaseException")
    return names


def walk_guarded(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, and whether it sits in the body of a `try` that handles ImportError or
    AttributeError."""

    def visit(node: ast.AST, guarded: bool) -> Iterator[tuple[ast.AST, bool]]:
        yield node, guarded
        if isinstance(node, ast.Try):
            inner = guarded or bool(_handled(node) & GUARDS)
            for child in node.body:
                yield from visit(child, inner)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                yield from visit(part, guarded)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, guarded)

    yield from visit(tree, False)


def problems_in(source: str, where: str) -> list[str]:
    found = []
    for node, guarded in walk_guarded(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and (node.value == "/proc" or node.value.startswith("/proc/")):
            found.append(f"{line} reads /proc ({node.value!r}); use procs (psutil)")
        elif isinstance(node, ast.Call) and _is(node.func, "os", "kill") and len(node.args) == 2 \
                and isinstance(node.args[1], ast.Constant) and node.args[1].value == 0:
            found.append(f"{line} calls os.kill(pid, 0), which kills on Windows; use procs.alive")
        elif isinstance(node, ast.Import | ast.ImportFrom) and not guarded:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if node.level == 0 else [])
            for name in names:
                if name.partition(".")[0] in POSIX_MODULES:
                    found.append(f"{line} imports {name} outside a try/except ImportError")
        elif isinstance(node, ast.Attribute) and not guarded:
            for module, names in (("signal", POSIX_SIGNALS | POSIX_SIGNAL_CALLS),
                                  ("os", POSIX_OS_CALLS)):
                if _is(node, module, node.attr) and node.attr in names:
                    found.append(f"{line} uses {module}.{node.attr}, which Windows lacks")
    return found


def _is(node: ast.AST, module: str, attr: str) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == attr
            and isinstance(node.value, ast.Name) and node.value.id == module)


def test_the_laptop_side_is_portable() -> None:
    found = [problem for path in laptop_modules()
             for problem in problems_in(path.read_text(encoding="utf-8"),
                                        str(path.relative_to(REPO_ROOT)))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("source", "expected"), [
    ("open('/proc/1/stat')", "reads /proc"),
    ("p = f'/proc/{pid}/cmdline'", "reads /proc"),
    ("import os\nos.kill(pid, 0)", "os.kill(pid, 0)"),
    ("import fcntl", "imports fcntl"),
    ("def f():\n    import resource", "imports resource"),
    ("from pwd import getpwuid", "imports pwd"),
    ("import signal\nsignal.signal(signal.SIGHUP, h)", "signal.SIGHUP"),
    ("import os\nos.killpg(1, 15)", "os.killpg"),
    ("import os\nx = os.getuid()", "os.getuid"),
    ("try:\n    import fcntl\nexcept OSError:\n    pass", "imports fcntl"),
])
def test_the_rules_catch(source: str, expected: str) -> None:
    found = problems_in(source, "m.py")
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize("source", [
    "try:\n    import fcntl\nexcept ImportError:\n    fcntl = None",
    "try:\n    import pwd\n    name = pwd.getpwuid(os.getuid()).pw_name\n"
    "except (ImportError, KeyError):\n    name = 'user'",
    "sigs = [getattr(signal, n) for n in ('SIGHUP',) if hasattr(signal, n)]",
    "os.kill(pid, signal.SIGTERM)",
    "path = '/process/x'",
])
def test_the_rules_allow(source: str) -> None:
    assert problems_in(source, "m.py") == []
