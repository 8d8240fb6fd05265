"""The processes of scripts/bench.py: every one started is stopped by PID on exit; the
tunnels under test (OpenSSH's `ssh -N -L`, bench_tunnel.py with one implementation)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_client import READY_TIMEOUT, wait_ready

from sandbox.sshd import Sshd, free_port

HERE = Path(__file__).resolve().parent
TUNNEL_SCRIPT = str(HERE / "bench_tunnel.py")


# -- processes ---------------------------------------------------------------------------------


class Processes:
    """Every process this script starts, stopped (by PID, via Popen) on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one process we started (a tunnel about to be replaced)."""
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        _terminate(proc)

    def stop_all(self) -> None:
        """Close stdin (our helpers then exit on their own), then terminate, then kill."""
        for proc in self.procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        deadline = time.monotonic() + 3.0
        for proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            _terminate(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process we started if it still runs, then kill it after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def read_line(proc: subprocess.Popen[bytes], prefix: str, timeout: float) -> str:
    """First stdout line of `proc` starting with `prefix` (bounded by `timeout`)."""
    found: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(prefix):
                found.append(line)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        raise RuntimeError(f"{proc.args!r} did not print {prefix!r} within {timeout:.0f}s")
    return found[0]



def start_openssh(
    procs: Processes, sshd: Sshd, workdir: Path, target: int, cipher: str | None
) -> tuple[int, subprocess.Popen[bytes], str]:
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line("127.0.0.1") + "\n")
    port = free_port("127.0.0.1")
    log = workdir / f"ssh-{cipher or 'default'}.log"
    # Over a ProxyCommand (`sshd -i`, as `up` reaches the sandbox), or sshd's TCP port.
    route = (["-o", f"ProxyCommand={sshd.proxy_command}"] if sshd.proxy_command
             else ["-p", str(sshd.port)])
    argv = [
        "ssh", "-F", "/dev/null", "-v", "-N",
        "-o", "BatchMode=yes",
        "-o", "ExitOnForwardFailure=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "IdentitiesOnly=yes",
        "-i", str(sshd.client_key),
        *route,
        "-L", f"127.0.0.1:{port}:127.0.0.1:{target}",
    ]  # fmt: skip
    if cipher:
        argv += ["-c", cipher]
    argv.append(f"{sshd.user}@127.0.0.1")
    with log.open("wb") as err:
        proc = procs.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    wait_ready(port, proc)
    match = re.search(r"kex: server->client cipher: (\S+)", log.read_text(errors="replace"))
    return port, proc, match.group(1) if match else "?"


def start_python_tunnel(
    procs: Processes, sshd: Sshd, target: int, impl: str, extra: list[str],
    tree: Path | None = None,
) -> tuple[int, subprocess.Popen[bytes], str]:
    """bench_tunnel.py as its own process; with `tree`, that checkout's package is used."""
    env = dict(os.environ, BENCH_TREE=str(tree.resolve())) if tree is not None else None
    argv = [
        sys.executable, TUNNEL_SCRIPT,
        "--impl", impl,
        *(["--proxy-command", sshd.proxy_command] if sshd.proxy_command
          else ["--ssh-port", str(sshd.port)]),
        "--user", sshd.user,
        "--key", str(sshd.client_key),
        "--host-key-line", sshd.host_key_line,
        "--target-port", str(target),
        *extra,
    ]  # fmt: skip
    proc = procs.start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    _, port, cipher = read_line(proc, "READY", READY_TIMEOUT).split()
    wait_ready(int(port), proc)
    return int(port), proc, cipher
