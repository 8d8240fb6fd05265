"""Byte pipes between sockets and a small threaded socket server (used by proxy and relay)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from remote_runtime.lifecycle import Resource

CHUNK = 65536
POLL = 0.25  # how often idle loops look at their stop flag


def pipe(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until both sides close, one fails, or `stop` is set."""
    peers = {a: b, b: a}
    with selectors.DefaultSelector() as sel:
        for sock in peers:
            sel.register(sock, selectors.EVENT_READ)
        reading = set(peers)
        while reading and not stop.is_set():
            for key, _ in sel.select(timeout=POLL):
                src = key.fileobj
                assert isinstance(src, socket.socket)
                try:
                    data = src.recv(CHUNK)
                    if data:
                        peers[src].sendall(data)
                        continue
                except OSError:
                    return  # a reset on either side ends the whole connection
                # EOF: pass the half-close on and keep draining the other direction.
                sel.unregister(src)
                reading.discard(src)
                with contextlib.suppress(OSError):
                    peers[src].shutdown(socket.SHUT_WR)


class Server(Resource):
    """A listening socket served by one accept thread and one thread per connection."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def _serve(self, listener: socket.socket) -> None:
        listener.settimeout(POLL)
        self._listener = listener
        accept = threading.Thread(target=self._accept_loop, name="sandbox-accept", daemon=True)
        self._threads.add(accept)
        accept.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by close()
            conn.settimeout(None)
            with self._lock:
                busy = len(self._threads) - 1 >= self.max_connections
                if not busy:
                    worker = threading.Thread(target=self._run, args=(conn,), daemon=True)
                    self._threads.add(worker)
                    self._sockets.add(conn)
            if busy:
                self._refuse(conn)
                continue
            worker.start()

    def _refuse(self, conn: socket.socket) -> None:
        conn.close()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass  # a peer went away; nothing to report to anyone
        finally:
            conn.close()
            with self._lock:
                self._sockets.discard(conn)
                self._threads.discard(threading.current_thread())

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        """Ask the loops to finish (safe from a signal handler)."""
        self._stop.set()

    def track(self, sock: socket.socket) -> None:
        """Close `sock` on close() too (an upstream socket opened by a handler)."""
        with self._lock:
            self._sockets.add(sock)

    def close(self) -> None:
        """Close the listener and every connection, then wait for the threads."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
