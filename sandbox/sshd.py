"""A real OpenSSH sshd with a throwaway config, host key and client key in a work directory.

Two ways to reach it: a listening daemon on a loopback address (`listen=(host, port)`),
or inetd mode (`listen=None`) where every connection runs `sshd -i` through
`proxy_command`, optionally inside a network namespace.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from remote_runtime import procs
from remote_runtime.lifecycle import Resource
from sandbox.common import SandboxError, find_binary, kill_and_wait, wait_until

INSTALL_HINT = "install openssh-server (apt-get install openssh-server)"
START_TIMEOUT = 10.0
START_ATTEMPTS = 5


def free_port(host: str) -> int:
    """A port that was free on `host` a moment ago (sshd cannot bind port 0 itself)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def answers_ssh(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if something on host:port sends an SSH-2.0 banner."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(256).startswith(b"SSH-2.0")
    except OSError:
        return False


def _run_keygen(keygen: str, path: Path, comment: str) -> None:
    if path.exists():
        return
    result = subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SandboxError(f"ssh-keygen failed for {path}", details=result.stderr.strip())


class Sshd(Resource):
    """A throwaway sshd; a context manager (start on enter, stop on exit)."""

    def __init__(
        self,
        workdir: Path,
        *,
        listen: tuple[str, int] | None = None,
        namespace: str | None = None,
        set_env: dict[str, str] | None = None,
        extra_config: str = "",
        pam_stack: str | None = None,
    ) -> None:
        if listen is not None and namespace is not None:
            # A listening daemon inside a namespace would be unreachable from here.
            raise ValueError("namespace is only supported in inetd mode (listen=None)")
        self.workdir = Path(workdir)
        self.listen = listen
        self.namespace = namespace
        self.set_env = dict(set_env or {})
        self.extra_config = extra_config
        # A PAM stack for sshd's "sshd" service (UsePAM yes), e.g. a one-time-code
        # challenge: bind-mounted over /etc/pam.d/sshd in sshd's own mount namespace
        # (root, listen mode), so the machine's PAM configuration is never touched.
        self.pam_stack = pam_stack
        self.pam_path = self.workdir / "pam.d-sshd"
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.client_key = self.workdir / "id_ed25519"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.host_key_line = ""
        self.port: int | None = None
        self.proxy_command: str | None = None
        self._sshd = ""
        self._proc: subprocess.Popen[bytes] | None = None


    # -- setup ---------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Keys, authorized_keys and the privsep dir; idempotent so a restart keeps the keys."""
        self._sshd = find_binary("sshd", "/usr/sbin/sshd", hint=INSTALL_HINT)
        keygen = find_binary("ssh-keygen", hint=INSTALL_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        _run_keygen(keygen, self.host_key, "sandbox-host")
        _run_keygen(keygen, self.client_key, "sandbox-client")
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        fields = self.host_key.with_suffix(".pub").read_text().split()
        self.host_key_line = f"{fields[0]} {fields[1]}"
        if os.geteuid() == 0:
            # sshd's privilege separation directory; it refuses to start without it.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def _config_text(self, listen_address: str | None) -> str:
        lines = []
        if self.extra_config:
            # sshd_config keeps the first value it sees, so extra lines go first to win.
            lines += [self.extra_config.rstrip("\n"), ""]
        if listen_address:
            lines.append(f"ListenAddress {listen_address}")
        if self.pam_stack is not None:
            lines += ["UsePAM yes", "KbdInteractiveAuthentication yes"]
        lines += [
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            f"PidFile {self.workdir / 'sshd.pid'}",
            "Subsystem sftp internal-sftp",
            "AllowTcpForwarding yes",
            "LogLevel VERBOSE",
        ]
        if self.set_env:
            entries = []
            for key, value in self.set_env.items():
                if any(ch in key + value for ch in '"\n\\') or not key:
                    raise ValueError(f"unsupported SetEnv entry {key!r}")
                entries.append(f'"{key}={value}"')
            lines.append("SetEnv " + " ".join(entries))
        return "\n".join(lines) + "\n"

    def _write_config(self, listen_address: str | None) -> None:
        self.config_path.write_text(self._config_text(listen_address))
        if self.pam_stack is not None:
            self.pam_path.write_text(self.pam_stack)
        check = subprocess.run(
            [self._sshd, "-t", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise SandboxError(
                f"sshd rejected its config {self.config_path}", details=check.stderr.strip()
            )

    def _log_tail(self, offset: int = 0, lines: int = 20) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Create keys and config; in listen mode start the daemon and wait for its banner."""
        self._started = True
        self._prepare()
        if self.listen is None:
            self._write_config(None)
            argv = [self._sshd, "-i", "-f", str(self.config_path), "-E", str(self.log_path)]
            if self.namespace:
                argv = ["ip", "netns", "exec", self.namespace, *argv]
            self.proxy_command = shlex.join(argv)
            return
        self._start_listening()

    def _start_listening(self) -> None:
        assert self.listen is not None
        host = self.listen[0]
        wanted = self.port or self.listen[1]
        last_error = ""
        for _ in range(START_ATTEMPTS):
            port = wanted or free_port(host)
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self._write_config(address)
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            argv = [self._sshd, "-D", "-f", str(self.config_path), "-E", str(self.log_path)]
            if self.pam_stack is not None:
                argv = self._with_own_pam(argv)
            with self.log_path.open("ab") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    # Own session: a terminal's Ctrl-C must not kill it before our teardown.
                    start_new_session=True,
                )
            if _wait_ready(proc, host, port):
                self._proc, self.port = proc, port
                return
            procs.stop_child(proc)
            last_error = self._log_tail(offset)
            if "Address already in use" not in last_error:
                break
            time.sleep(0.2)
        raise SandboxError(
            f"sshd did not start listening on {host} (log {self.log_path})",
            details=last_error,
        )

    def _with_own_pam(self, argv: list[str]) -> list[str]:
        """`argv` run in a private mount namespace where /etc/pam.d/sshd is our stack."""
        if self.listen is None or os.geteuid() != 0:
            raise SandboxError("a PAM stack needs root and a listening sshd")
        unshare = find_binary("unshare", hint="install util-linux")
        script = 'mount --bind "$0" /etc/pam.d/sshd && exec "$@"'
        return [unshare, "--mount", "--propagation", "private", "sh", "-c", script,
                str(self.pam_path), *argv]

    def close(self) -> None:
        """Stop the daemon we started and every session process of this sandbox."""
        if self._proc is not None:
            procs.stop_child(self._proc)
            self._proc = None
        kill_and_wait(self.session_pids)

    def kill_sessions(self, sig: int = signal.SIGKILL) -> list[int]:
        """Signal the session processes of this sandbox; return their PIDs."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    # -- introspection -------------------------------------------------------------------------

    def known_hosts_line(self, name: str) -> str:
        """A known_hosts line for this server's host key under `name` (bracketed for port != 22)."""
        if self.port not in (None, 22) and not name.startswith("["):
            name = f"[{name}]:{self.port}"
        return f"{name} {self.host_key_line}"

    def session_pids(self) -> list[int]:
        """PIDs of sshd processes serving connections of this sandbox (not the listener).

        After authentication sshd retitles itself ("sshd: root@notty"), so besides the
        config path in the command line we also match sshd processes holding our log open.
        """
        own = {os.getpid(), self._proc.pid if self._proc else -1}
        config = str(self.config_path)
        log = str(self.log_path)
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) in own:
                continue
            try:
                if not Path(entry.path, "comm").read_text().startswith("sshd"):
                    continue
                cmdline = (
                    Path(entry.path, "cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                )
                if config in cmdline or _holds_open(entry.path, log):
                    found.append(int(entry.name))
            except OSError:
                continue  # the process went away or is not ours to inspect
        return sorted(found)


def _wait_ready(proc: subprocess.Popen[bytes], host: str, port: int) -> bool:
    """Wait until `proc` answers with an SSH banner on host:port (False if it exits first)."""

    def settled() -> bool:
        return proc.poll() is not None or answers_ssh(host, port, 0.5)

    wait_until(settled, timeout=START_TIMEOUT)
    return proc.poll() is None and answers_ssh(host, port, 0.5)


def _holds_open(proc_dir: str, target: str) -> bool:
    try:
        fds = os.scandir(os.path.join(proc_dir, "fd"))
    except OSError:
        return False
    with fds:
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd.path) == target:
                    return True
    return False

