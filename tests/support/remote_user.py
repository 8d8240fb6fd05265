"""The sandbox's remote user, remade for one test: its own HOME and login shell, and the
Python environments a real host would have.

sshd reads the user's home and login shell from /etc/passwd. `RemoteUser` gives sshd a
private copy of that file, bind-mounted over /etc/passwd in a mount namespace of its own
(`unshare --mount` around the sandbox's ProxyCommand), so nothing on this machine
changes: the remote starts with a fresh HOME (no pyenv, no pip config of root's) and
whichever shell the test names, with whatever startup files it writes there.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import Sandbox
from support.remote import sandbox_profile

MARKER_MODULE = "rr_dlvm_marker"


@dataclass(frozen=True)
class RemoteUser:
    home: Path
    shell: str
    passwd: Path

    def proxy_command(self, box: Sandbox) -> str:
        assert box.sshd is not None and box.sshd.proxy_command, "needs the netns sandbox"
        mount = 'mount --bind "$0" /etc/passwd && exec "$@"'
        wrapper = shlex.join(["unshare", "--mount", "--propagation", "private",
                              "sh", "-c", mount, str(self.passwd)])
        return f"{wrapper} {box.sshd.proxy_command}"

    def profile(self, box: Sandbox, name: str, port: int, **sections: dict[str, Any]
                ) -> dict[str, Any]:
        """A sandbox profile that logs in as this user; `sections` update the body's."""
        body = sandbox_profile(box, name, port, ssh={"proxy_command": self.proxy_command(box)})
        for section, values in sections.items():
            body.setdefault(section, {}).update(values)
        return body


def remote_user(root: Path, shell: str, files: dict[str, str] | None = None) -> RemoteUser:
    """A fresh HOME under `root` holding `files` (relative path -> text), and `shell`."""
    home = root / "remote-home"
    home.mkdir(mode=0o700, parents=True)
    for relative, text in (files or {}).items():
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    me = pwd.getpwuid(os.getuid()).pw_name
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == me:
            fields[5], fields[6] = str(home), shell
        lines.append(":".join(fields))
    passwd = root / "passwd"
    passwd.write_text("\n".join(lines) + "\n")
    passwd.chmod(0o644)
    return RemoteUser(home, shell, passwd)


def python_env(prefix: Path, *, ipykernel: bool, pip: bool = False, marker: str = "") -> Path:
    """A venv at `prefix` (a conda-like prefix: bin/python); returns its python.

    With `ipykernel`, it sees this test run's packages (ipykernel among them) through
    --system-site-packages; without, it has nothing but the standard library (and pip
    when asked). `marker` goes into its own site-packages as `rr_dlvm_marker.VALUE`.
    """
    argv = [sys.executable, "-m", "venv", str(prefix)]
    if ipykernel:
        argv.append("--system-site-packages")
    if not pip:
        argv.append("--without-pip")
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    python = prefix / "bin" / "python"
    if marker:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True, timeout=60).stdout.strip()
        Path(site, f"{MARKER_MODULE}.py").write_text(f"VALUE = {marker!r}\n")
    return python
