"""One forwarded connection: an accepted local socket and its direct-tcpip channel.

Two threads touch a connection, and neither ever waits for the other:

- the forwarder's loop thread reads the client, sends what goes to the server (data,
  EOF, CLOSE, window adjusts, replies), and closes; whoever sends this channel's
  messages holds `send_lock`, so they leave in order, and nothing after CLOSE;
- paramiko's transport thread calls the `hooks.Owner` methods (`server_side`): it
  writes what the server sent straight to the client when the socket takes it at
  once, leaves the rest in `_out` for the loop, sends the first request and window
  adjusts itself when `send_lock` is free (it only tries it), and otherwise only
  records what happened and wakes the loop (`wake`).

Both sockets are non-blocking. Flow control is SSH's: we read from the client at
most what the server's window allows, and grant the server more window only for
bytes the client has taken, so a client that stops reading stops its own channel
and nothing else. The state shared with the transport thread is under `lock`, which
is never held while sending to the server (that may wait for a key exchange, which
only the transport thread can finish).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.common import (
    cMSG_CHANNEL_CLOSE,
    cMSG_CHANNEL_DATA,
    cMSG_CHANNEL_EOF,
    cMSG_CHANNEL_FAILURE,
    cMSG_CHANNEL_WINDOW_ADJUST,
)
from paramiko.message import Message

from .hooks import TransportHooks, mark_closed
from .packets import channel_data
from .server_side import SEND_ERRORS, ServerSide

# Client reads per wake-up before the loop turns to other connections.
READS_PER_TURN = 4


class Settings:
    """The forwarder's tuning, read when a connection is made (bench_tunnel.py sets them)."""

    def __init__(self, *, window_size: int, max_packet_size: int, read_size: int,
                 open_timeout: float) -> None:
        self.window_size = window_size
        self.max_packet_size = max_packet_size
        self.read_size = read_size
        self.open_timeout = open_timeout


class Connection(ServerSide):
    """One client socket and its channel: the loop's half (`ServerSide` is the transport
    thread's; see the module docstring for who does what)."""

    def __init__(
        self,
        sock: socket.socket,
        peer: tuple[str, int],
        hooks: TransportHooks,
        settings: Settings,
        wake: Callable[[Connection], None],
        release: Callable[[Connection], None],
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # what the loop polls (a closed socket forgets it)
        self.peer = peer
        self.hooks = hooks
        self.settings = settings
        self.wake = wake  # ask the loop to `step` this connection (any thread)
        self.release = release  # the loop stops watching the socket before it is closed
        self.channel: paramiko.Channel | None = None
        self.lock = threading.Lock()
        # Held while this channel's messages are made and sent, by the loop (which may
        # wait) or the transport thread (which only tries: it never waits). Re-entrant:
        # a failed send finishes the connection, which sends CLOSE.
        self.send_lock = threading.RLock()
        self.deadline = time.monotonic() + settings.open_timeout
        self.mask = 0  # the selector events the loop registered
        # Shared with the transport thread, under `lock`:
        self._out: collections.deque[bytes | memoryview] = collections.deque()
        self._blocked = False  # the client's socket was full: the loop writes the rest
        self._held = False  # `_out` waits for the transport's next read (more is coming)
        self._unacked = 0  # bytes the client took since our last window adjust
        self._answered = False
        self._ended = False  # the server's EOF or CLOSE (or the transport died)
        self._client_failed = False
        self._replies_due = 0
        self._close_received = False
        self._close_sent = False
        self._sock_closed = False
        self._wake_pending = False
        self._window_waiting = False
        self._unsent = b""  # read from the client while a key exchange held the sending
        # The loop's own:
        self.opened = False
        self.refused = False
        self.done = False
        self._abandoned = False  # finished while being opened (under `lock`)
        self._local_eof = False
        self._shut_wr = False
        self._adjust_at = max(1, settings.window_size // 10)

    # -- the loop thread ------------------------------------------------------------------------

    def open(self, remote: tuple[str, int]) -> None:
        """Ask the server for the channel; the answer comes through `open_answered`."""
        self.channel = self.hooks.open_channel(
            self, remote, self.peer,
            window_size=self.settings.window_size,
            max_packet_size=self.settings.max_packet_size,
        )

    def step(self, readable: bool = False) -> None:
        """Do whatever is due: after a wake-up, or when the socket is ready."""
        channel = self.channel
        if channel is None:
            return
        with self.lock:
            self._wake_pending = False
            answered, ended, failed = self._answered, self._ended, self._client_failed
        if self.done:
            return
        if not self.opened:
            if not (answered or ended):
                return
            if not channel.active or (ended and not answered):
                self.refused = True
                self.finish()
                return
            self.opened, readable = True, True  # the request is usually waiting already
        if failed:
            self.finish()
            return
        self._flush()
        self._acknowledge()
        self._reply()
        if self._unsent:
            with self.send_lock:
                unsent, self._unsent = self._unsent, b""
                if not self._send_data(unsent):
                    return
        if self._window_waiting and channel.out_window_size > 0:
            self._window_waiting, readable = False, True
        if readable and not self.done and not self._local_eof and not channel.closed:
            self._read_client()
        if not self.done:
            self._after_server_end()

    def readable(self) -> None:
        """The client's socket has something: most often a request on an open connection."""
        if (self.opened and not self.done and not self._local_eof and not self._window_waiting
                and not self._unsent and not self._out):
            self._read_client()  # anything else due comes with a wake-up (`step`)
        else:
            self.step(readable=True)

    def interest(self) -> int:
        """The selector events this connection waits for now."""
        if self.done or self._sock_closed:
            return 0
        mask = 0
        if (self.opened and not self._local_eof and not self._window_waiting
                and not self.channel.closed):  # type: ignore[union-attr]
            mask |= 1  # poller.READ
        if self._blocked:
            mask |= 2  # poller.WRITE
        return mask

    def expired(self, now: float) -> bool:
        return not self.opened and not self.done and now > self.deadline

    def finish(self) -> None:
        """Close the client socket and end the channel (CLOSE is its last message)."""
        if self.done:
            return
        with self.send_lock:  # the transport thread may be reading the first request
            self.done = True
            with self.lock:
                self._sock_closed = True
                self._out.clear()
                # Still being opened: the transport thread closes it when the answer comes.
                self._abandoned = not self.opened and not (self._answered or self._ended)
                abandoned = self._abandoned
            self.release(self)
            with contextlib.suppress(OSError):
                self.sock.close()
            if self.channel is not None and not abandoned:
                self._send_close_locked()

    # -- the loop thread, one job each --------------------------------------------------------

    def _read_client(self) -> None:
        channel = self.channel
        assert channel is not None
        for _ in range(READS_PER_TURN):
            if channel.out_window_size <= 0:
                # Set before looking again: the transport thread wakes us only if set.
                self._window_waiting = True
                if channel.out_window_size <= 0:
                    return
            self._window_waiting = False
            # Read and send as one step: the transport thread may read the first request.
            with self.send_lock:
                if self.done or not self._forward_some(channel):
                    return

    def _forward_some(self, channel: paramiko.Channel) -> bool:
        """One read from the client, sent on; False when there is nothing more to do now."""
        try:
            data = self.sock.recv(min(self.settings.read_size, channel.out_window_size))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.finish()  # reset by the client
            return False
        if not data:
            self._local_eof = True
            self._send_eof()
            return False
        # A short read most likely emptied the socket.
        return self._send_data(data) and len(data) == self.settings.read_size

    def _send_data(self, data: bytes, *, now: bool = False) -> bool:
        """Send `data` in packets (holding `send_lock`). With `now` (the transport thread),
        what a key exchange holds back is left in `_unsent` for the loop."""
        channel = self.channel
        assert channel is not None
        if not now and len(data) <= channel.out_max_packet_size - 64:
            with channel.lock:  # one packet (a request): the common case, made short
                if channel.closed or self._close_sent:
                    return False
                fits = channel.out_window_size >= len(data)
                if fits:
                    channel.out_window_size -= len(data)
            if fits:
                return self._send(self._data_message(channel.remote_chanid, data))
        return self._send_data_in_packets(data, now)

    def _send_data_in_packets(self, data: bytes, now: bool) -> bool:
        channel = self.channel
        assert channel is not None
        view = memoryview(data)
        while view:
            with channel.lock:
                if channel.closed or self._close_sent:
                    return False
                size = min(len(view), channel.out_window_size, channel.out_max_packet_size - 64)
                channel.out_window_size -= size
            message = self._data_message(channel.remote_chanid,
                                         data if size == len(data) else view[:size])
            if now:
                if not self.hooks.send_now(message):
                    with channel.lock:
                        channel.out_window_size += size
                    self._unsent = bytes(view)
                    return False
            elif not self._send(message):
                return False
            view = view[size:]
        return True

    def _data_message(self, remote_chanid: int, data: bytes | memoryview) -> Message | bytes:
        if self.hooks.raw_messages:  # the packetizer takes a message's bytes (`packets`)
            return channel_data(remote_chanid, data)
        message = Message()
        message.add_byte(cMSG_CHANNEL_DATA)
        message.add_int(remote_chanid)
        message.add_string(data)
        return message

    def _send_eof(self) -> None:
        channel = self.channel
        assert channel is not None
        with channel.lock:
            if channel.closed or channel.eof_sent or self._close_sent:
                return
            channel.eof_sent = True
        message = Message()
        message.add_byte(cMSG_CHANNEL_EOF)
        message.add_int(channel.remote_chanid)
        self._send(message)
        self._after_server_end()

    def _send_close(self) -> None:
        with self.send_lock:
            self._send_close_locked()

    def _send_close_locked(self) -> None:
        channel = self.channel
        assert channel is not None
        with self.lock:
            if self._close_sent:
                return
            self._close_sent = True
            live = channel.active and self.hooks.transport.is_active()
            forget = self._close_received or not live
        mark_closed(channel)
        if live:
            message = Message()
            message.add_byte(cMSG_CHANNEL_CLOSE)
            message.add_int(channel.remote_chanid)
            self._send(message)
        if forget:
            self.hooks.forget(channel)

    def _send(self, message: Message | bytes) -> bool:
        with self.send_lock:
            try:
                self.hooks.send(message)
            except SEND_ERRORS:
                self.finish()
                return False
        return True

    def _flush(self) -> None:
        """Write what the client has not taken yet, as far as it takes it now."""
        if not self._out:
            return
        with self.lock:
            self._write_out_locked()
            failed = self._client_failed
        if failed:
            self.finish()

    def _acknowledge(self) -> None:
        """Grant the server window for what the client took."""
        with self.lock:
            amount = self._unacked if self._unacked >= self._adjust_at else 0
            self._unacked -= amount
        channel = self.channel
        if amount and not self.done and channel is not None and not channel.closed:
            message = Message()
            message.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
            message.add_int(channel.remote_chanid)
            message.add_int(amount)
            self._send(message)

    def _reply(self) -> None:
        with self.lock:
            count, self._replies_due = self._replies_due, 0
        channel = self.channel
        for _ in range(count):
            if self.done or channel is None or channel.closed:
                return
            message = Message()
            message.add_byte(cMSG_CHANNEL_FAILURE)
            message.add_int(channel.remote_chanid)
            self._send(message)

    def _after_server_end(self) -> None:
        """Pass the server's EOF on once the client has everything; finish when both ended."""
        with self.lock:
            ended, drained = self._ended, not self._out
        channel = self.channel
        if not ended or not drained or channel is None:
            return
        if channel.closed or self._local_eof:
            self.finish()
        elif not self._shut_wr:
            self._shut_wr = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)

    def __repr__(self) -> str:
        state: dict[str, Any] = {"opened": self.opened, "done": self.done}
        return f"<Connection {self.peer} {state}>"
