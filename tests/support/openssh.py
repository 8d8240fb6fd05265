"""OpenSSH as the reference: an `ssh` that sees a test's temporary HOME as its home.

OpenSSH takes `~` and %d from the passwd database, not $HOME, so in a test's
temporary HOME a plain `ssh -G` would read the real ~/.ssh/config. nss_wrapper
(Debian package libnss-wrapper, LD_PRELOAD) gives it a passwd entry whose home
is the test's HOME. The wrapper applies it to `ssh -G` only: a real connection
would hand the preload to its ProxyCommand and, through it, to a test's sshd.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

NSS_WRAPPER_GLOBS = ("/usr/lib/*/libnss_wrapper.so", "/usr/lib/libnss_wrapper.so",
                     "/usr/lib64/libnss_wrapper.so", "/usr/lib/*/libnss_wrapper.so.0")
WRAPPER = """#!/bin/sh
for arg in "$@"; do
  if [ "$arg" = "-G" ] || [ -n "$RR_TEST_SSH_HOME" ]; then
    unset RR_TEST_SSH_HOME
    LD_PRELOAD={lib} NSS_WRAPPER_PASSWD={passwd} NSS_WRAPPER_GROUP={group} exec {ssh} "$@"
  fi
done
exec {ssh} "$@"
"""


def nss_wrapper() -> str | None:
    for pattern in NSS_WRAPPER_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def real_ssh() -> str | None:
    return shutil.which("ssh")


def install_wrapper(home: Path, bin_dir: Path) -> Path:
    """Write `bin_dir/ssh`, an OpenSSH client whose `-G` sees `home` as the user's home."""
    lib, ssh = nss_wrapper(), real_ssh()
    assert lib is not None and ssh is not None
    bin_dir.mkdir(parents=True, exist_ok=True)
    me = pwd.getpwuid(os.getuid())
    passwd, group = bin_dir / "passwd", bin_dir / "group"
    passwd.write_text(f"{me.pw_name}:x:{me.pw_uid}:{me.pw_gid}:{me.pw_gecos}:{home}:"
                      f"{me.pw_shell}\n")
    group.write_text(f"{me.pw_name}:x:{me.pw_gid}:\n")
    wrapper = bin_dir / "ssh"
    wrapper.write_text(WRAPPER.format(lib=lib, passwd=passwd, group=group, ssh=ssh))
    wrapper.chmod(0o755)
    return wrapper


def ssh_g(wrapper: Path, host: str, options: list[tuple[str, str]] = (),  # type: ignore[assignment]
          env: dict[str, str] | None = None) -> tuple[int, dict[str, list[str]], str]:
    """Run the reference `ssh -G`: (status, keyword -> values, stderr)."""
    argv = [str(wrapper), "-G"]
    for key, value in options:
        argv += ["-o", f"{key}={value}"]
    done = subprocess.run([*argv, "--", host], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, timeout=30, check=False)
    values: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value)
    return done.returncode, values, done.stderr


def ssh_v(wrapper: Path, host: str, options: list[tuple[str, str]] = (),  # type: ignore[assignment]
          env: dict[str, str] | None = None) -> tuple[list[str], str | None]:
    """What a real `ssh -v host` expands: (identity files it loads, proxy command it runs).

    No server answers (the ProxyCommand, when there is one, must be harmless: the
    tests use printf); ssh prints both before its handshake fails.
    """
    argv = [str(wrapper), "-v", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    for key, value in options:
        argv += ["-o", f"{key}={value}"]
    run_env = dict(env if env is not None else os.environ, RR_TEST_SSH_HOME="1")
    done = subprocess.run([*argv, "--", host, "true"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=run_env, timeout=30, check=False)
    identities, proxy = [], None
    for line in done.stderr.splitlines():
        if line.startswith("debug1: identity file "):
            path = line[len("debug1: identity file "):].rsplit(" type ", 1)[0]
            if not path.endswith("-cert"):
                identities.append(path)
        elif line.startswith("debug1: Executing proxy command: exec "):
            proxy = line[len("debug1: Executing proxy command: exec "):]
    return identities, proxy
