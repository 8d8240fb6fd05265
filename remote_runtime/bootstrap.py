"""How the agent reaches the remote and runs there, whatever the user's login shell.

sshd hands every command to the user's login shell, which may be sh, bash, zsh,
csh, tcsh or fish, and whose startup files may print (a `.bashrc` with a
greeting). So the command is the same short line for every call, one that all of
those shells parse alike (`LOGIN_COMMAND`): it starts a POSIX sh that reads one
line from stdin and runs it. That line (`agent_line`) prints `OUTPUT_MARK`, then
execs the agent: `python3 -c BOOTSTRAP BLOB ARGS`, every value quoted for sh.
Whatever the startup files printed comes before the mark and is dropped. The rest
of stdin (sh reads it byte by byte, so it leaves it alone) belongs to the agent.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import zlib
from pathlib import Path

from .errors import RemoteSetupError
from .ssh import CommandResult, RemoteProcess, Session, quote

AGENT_PACKAGE = "rr_agent"  # the agent's package name on the remote

# Parsed alike by sh, bash, zsh, csh, tcsh and fish; the POSIX sh it starts runs the
# first line of stdin.
LOGIN_COMMAND = "exec /bin/sh -c 'read -r line && eval \"$line\"'"
OUTPUT_MARK = "--remote-runtime-agent-output--"
MAX_PREAMBLE_LINES = 10_000

# Imports the agent package from the sources in argv[1] (a compressed JSON map of
# module name to source): no file is written on the host. Python >= 3.6.
_BOOTSTRAP = (
    "import base64,importlib.abc,importlib.util,json,sys,zlib\n"
    "S=json.loads(zlib.decompress(base64.b64decode(sys.argv.pop(1))).decode())\n"
    "class L(importlib.abc.MetaPathFinder,importlib.abc.Loader):\n"
    " def find_spec(self,name,path,target=None):\n"
    "  if name in S:return importlib.util.spec_from_loader(name,self,"
    f"is_package=name=={AGENT_PACKAGE!r})\n"
    " def create_module(self,spec):return None\n"
    " def exec_module(self,module):exec(compile(S[module.__name__],"
    "'<remote-runtime agent>/'+module.__name__,'exec'),module.__dict__)\n"
    "sys.meta_path.insert(0,L())\n"
    f"from {AGENT_PACKAGE}.main import main\n"
    "sys.exit(main(sys.argv[1:]))"
)
# The same program on one line (the agent line must be one line for `read`).
_ONE_LINE_BOOTSTRAP = f"exec({_BOOTSTRAP!r})"


def agent_sources() -> dict[str, str]:
    """The agent package as module name -> source, as the remote imports it."""
    package = Path(__file__).with_name("agent")
    sources = {}
    for path in sorted(package.glob("*.py")):
        name = AGENT_PACKAGE if path.stem == "__init__" else f"{AGENT_PACKAGE}.{path.stem}"
        sources[name] = path.read_text(encoding="utf-8")
    return sources


@functools.cache
def _agent_blob() -> str:
    data = json.dumps(agent_sources(), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(data, 9)).decode()


def remote_path(path: str) -> str:
    """`path` as one sh word, with a leading `~` expanded by the remote shell."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + quote(path[2:]) if path[2:] else '"$HOME"/'
    return quote(path)


def agent_line(python: str, *args: str, env: dict[str, str] | None = None) -> str:
    """The line the remote sh runs: the mark, then the agent under `python`.

    Every value is quoted, so a hostile `python`, argument or variable cannot
    inject shell syntax; `~` in `python` is the remote user's home. A value with a
    line break (which no profile value may hold) is refused: the line must stay one.
    """
    if any("\n" in value or "\r" in value for value in (python, *args, *(env or {}).values())):
        raise ValueError("values for the remote agent must be single lines")
    exports = "".join(f"{name}={quote(value)}; export {name}; "
                      for name, value in (env or {}).items() if name.isidentifier())
    words = [remote_path(python), "-c", quote(_ONE_LINE_BOOTSTRAP), _agent_blob(),
             *(quote(a) for a in args)]
    return f"{exports}printf '%s\\n' {OUTPUT_MARK} && exec {' '.join(words)}"


def after_mark(stdout: str) -> str:
    """The agent's own output: what follows the mark (all of it if there is no mark)."""
    head, mark, tail = stdout.partition(OUTPUT_MARK + "\n")
    return tail if mark else head


def run_agent(session: Session, python: str, *args: str, stdin: str = "",
              env: dict[str, str] | None = None, timeout: float = 60.0) -> CommandResult:
    """Run one agent command to its end; stdout holds only the agent's output."""
    result = session.run(LOGIN_COMMAND, stdin=agent_line(python, *args, env=env) + "\n" + stdin,
                         timeout=timeout)
    return CommandResult(result.status, after_mark(result.stdout), result.stderr)


def start_agent(session: Session, python: str, *args: str,
                env: dict[str, str] | None = None, timeout: float = 60.0) -> RemoteProcess:
    """Start a long-running agent command; its next line read is the agent's first.

    If the agent never starts (no /bin/sh, the login shell refuses), the process is
    returned at its end of output, for the caller to report."""
    process = session.start(LOGIN_COMMAND)
    process.write_line(agent_line(python, *args, env=env))
    deadline = time.monotonic() + timeout
    for _ in range(MAX_PREAMBLE_LINES):
        line = process.read_line(timeout=max(0.1, deadline - time.monotonic()))
        if line is None or line.endswith(OUTPUT_MARK):
            return process
    process.close()
    raise RemoteSetupError("the remote login shell printed too much before the agent started")


def refusal(text: str) -> RemoteSetupError | None:
    """The agent's refusal (an unsafe directory on the remote) in its output, if any."""
    for line in text.splitlines():
        if not line.startswith('{"refused"'):
            continue
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        return RemoteSetupError(str(answer["refused"]), hint=answer.get("hint"))
    return None
