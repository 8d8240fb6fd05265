"""A Python tunnel for scripts/bench.py, run as its own process (like `ssh -L` is).

``--impl forwarder`` runs remote_runtime.forward.Forwarder with aes128-gcm preferred;
``--impl sshtunnel`` runs the sshtunnel package with its defaults. Both listen on
127.0.0.1 only and forward to 127.0.0.1:<target-port> via the sandbox sshd. Prints
``READY <local port> <cipher>`` and runs until stdin closes.

The forwarder's SSH connection is made by remote_runtime.ssh.connect, the code
`remote-runtime up` uses. Tuning knobs for experiments (not used by the default
benchmark run): --window, --packet, --socket-read.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from pathlib import Path

# The package of this checkout, or of another one (bench.py --before sets BENCH_TREE).
sys.path.insert(0, os.environ.get("BENCH_TREE") or str(Path(__file__).resolve().parent.parent))

import paramiko
import sshtunnel

from remote_runtime import ssh
from remote_runtime.forward import forwarder
from remote_runtime.ssh import Endpoint

GCM = "aes128-gcm@openssh.com"


def _check_host_key(transport: paramiko.Transport, host_key_line: str) -> None:
    key_type, blob = host_key_line.split()[:2]
    key = transport.get_remote_server_key()
    if key.get_name() != key_type or key.asbytes() != base64.b64decode(blob):
        raise SystemExit("host key mismatch")


def _connect(args: argparse.Namespace) -> tuple[ssh.Session, paramiko.Transport]:
    """The tool's own connection code: strict host key, AES-GCM first, TCP_NODELAY,
    read-ahead socket, exactly as `remote-runtime up` connects."""
    known = Path(tempfile.mkdtemp(prefix="bench-known-")) / "known_hosts"
    if args.proxy_command:
        known.write_text(f"127.0.0.1 {args.host_key_line}\n")
        endpoint = Endpoint(host="127.0.0.1", user=args.user, identity_file=Path(args.key),
                            known_hosts=known, proxy_command=args.proxy_command)
    else:
        known.write_text(f"[127.0.0.1]:{args.ssh_port} {args.host_key_line}\n")
        endpoint = Endpoint(host="127.0.0.1", port=args.ssh_port, user=args.user,
                            identity_file=Path(args.key), known_hosts=known)
    session = ssh.connect(endpoint)
    return session, session.transport


def run_forwarder(args: argparse.Namespace) -> None:
    if args.window:
        forwarder.WINDOW_SIZE = args.window
    if args.socket_read:
        forwarder.SOCKET_READ_SIZE = args.socket_read
    if args.packet:
        forwarder.MAX_PACKET_SIZE = args.packet
    session, transport = _connect(args)
    try:
        with forwarder.Forwarder(
            transport, 0, remote_port=args.target_port, bind_hosts=("127.0.0.1",)
        ) as fwd:
            print(f"READY {fwd.port} {transport.remote_cipher}", flush=True)
            sys.stdin.read()
    finally:
        session.close()


def run_sshtunnel(args: argparse.Namespace) -> None:
    tunnel = sshtunnel.SSHTunnelForwarder(
        ("127.0.0.1", args.ssh_port),
        ssh_username=args.user,
        ssh_pkey=args.key,
        allow_agent=False,
        host_pkey_directories=[],
        remote_bind_address=("127.0.0.1", args.target_port),
        local_bind_address=("127.0.0.1", 0),
    )
    tunnel.start()
    try:
        transport = tunnel._transport
        _check_host_key(transport, args.host_key_line)
        print(f"READY {tunnel.local_bind_port} {transport.remote_cipher}", flush=True)
        sys.stdin.read()
    finally:
        tunnel.stop(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=["forwarder", "sshtunnel"], required=True)
    parser.add_argument("--ssh-port", type=int)
    parser.add_argument("--proxy-command", help="reach sshd through this command instead")
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--host-key-line", required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--window", type=int, default=0)
    parser.add_argument("--packet", type=int, default=0)
    parser.add_argument("--socket-read", type=int, default=0)
    args = parser.parse_args()
    if args.impl == "forwarder":
        run_forwarder(args)
    else:
        run_sshtunnel(args)


if __name__ == "__main__":
    main()
