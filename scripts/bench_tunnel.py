"""A Python tunnel for scripts/bench.py, run as its own process (like `ssh -L` is).

``--impl forwarder`` runs remote_runtime.forwarder.Forwarder with aes128-gcm preferred;
``--impl sshtunnel`` runs the sshtunnel package with its defaults. Both listen on
127.0.0.1 only and forward to 127.0.0.1:<target-port> via the sandbox sshd. Prints
``READY <local port> <cipher>`` and runs until stdin closes.

Tuning knobs for experiments (not used by the default benchmark run): --window,
--packet, --transport-nodelay / --no-transport-nodelay.
"""

from __future__ import annotations

import argparse
import base64
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paramiko
import sshtunnel

from remote_runtime import forwarder

GCM = "aes128-gcm@openssh.com"


def _check_host_key(transport: paramiko.Transport, host_key_line: str) -> None:
    key_type, blob = host_key_line.split()[:2]
    key = transport.get_remote_server_key()
    if key.get_name() != key_type or key.asbytes() != base64.b64decode(blob):
        raise SystemExit("host key mismatch")


class BufferedSocket:
    """Experiment: a socket whose recv reads ahead, so paramiko needs fewer syscalls."""

    def __init__(self, sock: socket.socket, size: int) -> None:
        self._sock = sock
        self._size = size
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(n, self._size))
            if len(data) <= n:
                return data
            self._buf, self._pos = data, 0
        end = self._pos + n
        out = self._buf[self._pos : end]
        self._pos = end
        return out

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def _connect(args: argparse.Namespace) -> paramiko.Transport:
    sock = socket.create_connection(("127.0.0.1", args.ssh_port), timeout=10)
    if args.transport_nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(BufferedSocket(sock, args.readahead) if args.readahead else sock)
    options = transport.get_security_options()
    options.ciphers = (GCM, *(c for c in options.ciphers if c != GCM))
    transport.start_client(timeout=10)
    _check_host_key(transport, args.host_key_line)
    key = paramiko.Ed25519Key.from_private_key_file(args.key)
    transport.auth_publickey(args.user, key)
    return transport


def run_forwarder(args: argparse.Namespace) -> None:
    if args.window:
        forwarder.WINDOW_SIZE = args.window
        forwarder.CHANNEL_READ_SIZE = 2 * args.window
    forwarder.CHUNK_BUFFER = args.chunk_buffer
    if args.socket_read:
        forwarder.SOCKET_READ_SIZE = args.socket_read
    if args.packet:
        forwarder.MAX_PACKET_SIZE = args.packet
    transport = _connect(args)
    try:
        with forwarder.Forwarder(
            transport, 0, remote_port=args.target_port, bind_hosts=("127.0.0.1",)
        ) as fwd:
            print(f"READY {fwd.port} {transport.remote_cipher}", flush=True)
            sys.stdin.read()
    finally:
        transport.close()


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
    parser.add_argument("--ssh-port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--host-key-line", required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--window", type=int, default=0)
    parser.add_argument("--packet", type=int, default=0)
    parser.add_argument("--readahead", type=int, default=0)
    parser.add_argument("--socket-read", type=int, default=0)
    parser.add_argument("--chunk-buffer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--transport-nodelay", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()
    if args.impl == "forwarder":
        run_forwarder(args)
    else:
        run_sshtunnel(args)


if __name__ == "__main__":
    main()
