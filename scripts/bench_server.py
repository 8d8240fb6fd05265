"""Target server for scripts/bench.py, run as its own process on 127.0.0.1.

Protocol: the client sends one line, then
  ``BULK <n>\\n``   the server sends n bytes and closes;
  ``ECHO <n>\\n``   the server echoes every n-byte message back until the client closes;
  ``SINK <n>\\n``   the server reads n bytes, then answers ``OK``;
and, for the fault suite (scripts/bench_faults.py), servers that end early:
  ``EARLY\\n``      reads a little, answers like an HTTP server refusing an upload, closes
                    with the rest unread (so the peer sees a reset);
  ``RESET <n>\\n``  sends n bytes, then resets the connection;
  ``DIGEST\\n``     reads until the client's EOF, then answers the SHA-256 of what it read;
  ``HALF\\n``       says ``hello``, closes its sending half, reads until EOF, closes.
Prints ``PORT <port>`` once listening and runs until stdin closes.
"""

from __future__ import annotations

import hashlib
import resource
import socket
import struct
import sys
import threading

CHUNK = b"\0" * (1024 * 1024)
MAX_LINE = 64
MAX_BULK = 64 * 1024**3
MAX_ECHO = 1024 * 1024


def _read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte or len(line) > MAX_LINE:
            return b""
        line += byte
    return line.strip()


def _recv_exactly(conn: socket.socket, buf: memoryview) -> bool:
    got = 0
    while got < len(buf):
        n = conn.recv_into(buf[got:])
        if n == 0:
            return False
        got += n
    return True


def _handle(conn: socket.socket) -> None:
    with conn:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            verb, _, arg = _read_line(conn).partition(b" ")
            size = int(arg or b"0")
            if verb == b"BULK" and 0 <= size <= MAX_BULK:
                _send_bytes(conn, size)
                conn.shutdown(socket.SHUT_WR)
            elif verb == b"SINK" and 0 <= size <= MAX_BULK:
                buf = memoryview(bytearray(len(CHUNK)))
                while size > 0:
                    n = conn.recv_into(buf[: min(size, len(buf))])
                    if n == 0:
                        return
                    size -= n
                conn.sendall(b"OK")
            elif verb == b"ECHO" and 0 < size <= MAX_ECHO:
                buf = memoryview(bytearray(size))
                while _recv_exactly(conn, buf):
                    conn.sendall(buf)
            else:
                _ends_early(conn, verb, size)
        except (OSError, ValueError):
            pass


def _send_bytes(conn: socket.socket, size: int) -> None:
    view = memoryview(CHUNK)
    while size > 0:
        step = min(size, len(CHUNK))
        conn.sendall(view[:step])
        size -= step


def _ends_early(conn: socket.socket, verb: bytes, size: int) -> None:
    if verb == b"EARLY":
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n")
    elif verb == b"RESET" and 0 <= size <= MAX_BULK:
        _send_bytes(conn, size)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif verb == b"DIGEST":
        digest = hashlib.sha256()
        while data := conn.recv(65536):
            digest.update(data)
        conn.sendall(digest.hexdigest().encode())
    elif verb == b"HALF":
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass


def main() -> None:
    # The soak holds 1,000 connections and more at once: lift the soft fd limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = socket.create_server(("127.0.0.1", 0), backlog=4096)
    print(f"PORT {server.getsockname()[1]}", flush=True)

    def accept_loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    sys.stdin.read()  # the parent closes our stdin (or kills us) to stop us
    server.close()


if __name__ == "__main__":
    main()
