"""One forwarded connection: an accepted local socket, its channel, and the pumps between them.

Each direction runs in its own thread doing blocking reads and writes: local ->
remote in the thread that calls `Connection.pump`, remote -> local in a helper
it starts. `Forwarder` opens the channel, passes its tuning constants in, and
calls `Connection.finish` when the connection ends. `disable_nagle` keeps the
first packets of every new connection from waiting on the transport's socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import paramiko


class Connection:
    """One accepted client socket and, once opened, its channel."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.sock = sock
        self.peer = peer
        self.channel: paramiko.Channel | None = None
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.closed = False

    def abort_socket(self) -> None:
        """Wake every thread blocked on the socket; the owning thread closes the fd."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close_channel(self) -> None:
        channel = self.channel
        if channel is not None:
            with contextlib.suppress(Exception):
                channel.close()

    def finish(self) -> bool:
        """Close the channel and the socket; False if the connection was already finished."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
        self.close_channel()
        self.abort_socket()
        with contextlib.suppress(OSError):
            self.sock.close()
        return True

    def pump(
        self,
        channel: paramiko.Channel,
        *,
        socket_read_size: int,
        channel_read_size: int,
        down_thread_name: str,
    ) -> None:
        """Pump local -> remote here and remote -> local in a helper, until both directions end.

        Raises:
            RuntimeError: the helper thread could not be started.
        """
        down = threading.Thread(
            target=self._pump_down,
            args=(channel, channel_read_size),
            name=down_thread_name,
            daemon=True,
        )
        self.threads.append(down)
        down.start()
        self._pump_up(channel, socket_read_size)
        down.join()

    def _pump_up(self, channel: paramiko.Channel, read_size: int) -> None:
        """Local socket -> channel, until the local side stops sending."""
        sock = self.sock
        try:
            while True:
                data = sock.recv(read_size)
                if not data:
                    channel.shutdown_write()  # pass the half-close on as an SSH EOF
                    return
                # One packet per send(): slicing per packet avoids sendall's re-copying
                # of the whole remainder after every packet.
                step = max(channel.out_max_packet_size - 64, 1024)
                for start in range(0, len(data), step):
                    chunk = data[start : start + step] if len(data) > step else data
                    while chunk:
                        sent = channel.send(chunk)
                        if sent == 0:
                            raise EOFError("channel closed")
                        chunk = chunk[sent:]
        except (OSError, EOFError, paramiko.SSHException):
            # Either side went away: end both directions.
            self.abort_socket()
            self.close_channel()

    def _pump_down(self, channel: paramiko.Channel, read_size: int) -> None:
        """Channel -> local socket, until the remote side stops sending."""
        sock = self.sock
        try:
            while True:
                data = channel.recv(read_size)
                if not data:
                    break
                sock.sendall(data)
            if channel.closed:
                # The remote closed the channel, not just its sending half.
                self.abort_socket()
            else:
                sock.shutdown(socket.SHUT_WR)
        except (OSError, EOFError, paramiko.SSHException):
            self.abort_socket()
            self.close_channel()


def disable_nagle(transport: paramiko.Transport) -> None:
    """Send SSH packets at once: with Nagle's algorithm a new connection waits ~40 ms.

    Opening a channel and sending its first data are two small writes in a row;
    Nagle holds the second until the first is acknowledged, which the server
    delays (delayed ACK). OpenSSH sets TCP_NODELAY for the same reason.
    """
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
