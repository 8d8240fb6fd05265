"""The transport thread's half of a forwarded connection (`connection.Connection`).

paramiko's transport thread calls these (`hooks.Owner`): what the server sent goes
straight to the client when its socket takes it at once, is held while more packets
are already read (one `sendmsg` per burst), or is left in `_out` for the loop. It also
sends two things itself when the channel's sender is free: a new connection's first
request, and the window adjusts the client's progress earns. Nothing here waits:
state shared with the loop is under `lock`, which is never held while sending to the
server; sending needs `send_lock`, which this side only tries, and goes out only if no
key exchange holds it back (else the loop does it).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.common import cMSG_CHANNEL_CLOSE, cMSG_CHANNEL_WINDOW_ADJUST
from paramiko.message import Message

from .hooks import TransportHooks, mark_closed

SEND_ERRORS = (OSError, EOFError, paramiko.SSHException)
# What the transport thread does after writing to the client (`_after_write_locked`).
_WAKE = 1
_ADJUST = 2

# Scatter-gather sends where the platform has them (not on Windows), of at most this
# many buffers at once (well below any system's IOV_MAX).
_SENDMSG = hasattr(socket.socket, "sendmsg")
SENDMSG_MAX = 64


class ServerSide:
    """What the transport thread does for a connection; `Connection` is the rest."""

    # Set by Connection.__init__.
    sock: socket.socket
    hooks: TransportHooks
    settings: Any  # connection.Settings
    channel: paramiko.Channel | None
    lock: threading.Lock
    send_lock: threading.RLock
    wake: Callable[[Any], None]
    done: bool
    _out: collections.deque[bytes | memoryview]
    _blocked: bool
    _held: bool
    _unacked: int
    _adjust_at: int
    _answered: bool
    _ended: bool
    _abandoned: bool
    _client_failed: bool
    _replies_due: int
    _close_received: bool
    _close_sent: bool
    _sock_closed: bool
    _wake_pending: bool
    _window_waiting: bool
    _unsent: bytes

    def _send_data(self, data: bytes, *, now: bool = False) -> bool:
        raise NotImplementedError  # Connection's

    def _wake(self) -> None:
        self.wake(self)

    def _write_out_locked(self) -> None:
        """Under `lock`, from either thread: send `_out` to the client, all at once if it
        takes it (one system call for what several packets brought); what it does not
        take waits for the loop (`_blocked`)."""
        out = self._out
        if len(out) == 1:
            # One piece (a response): taken out before the system call, so the loop, which
            # may wake while it runs (the client already answered), sees nothing left and
            # reads the client without waiting for `lock`.
            data = out.popleft()
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._client_failed = True
                self._blocked = False
                return
            self._unacked += sent
            if sent < len(data):
                out.appendleft(data[sent:])
        while out:
            try:
                if _SENDMSG and len(out) > 1:
                    sent = self.sock.sendmsg(list(itertools.islice(out, SENDMSG_MAX)))
                else:
                    sent = self.sock.send(out[0])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._client_failed = True
                out.clear()
                break
            self._unacked += sent
            while out and sent >= len(out[0]):
                sent -= len(out.popleft())
            if out and sent:
                out[0] = out[0][sent:]
            if out and not sent:
                break
        self._blocked = bool(out)

    def _wake_locked(self) -> bool:
        """Under `lock`: True if the loop must be woken (once until it looks)."""
        if self._wake_pending:
            return False
        self._wake_pending = True
        return True

    def open_answered(self) -> None:
        with self.lock:
            self._answered = True
            abandoned = self._abandoned
            if abandoned:
                self._close_sent = True
            wake = not abandoned and self._wake_locked()
        if abandoned:
            self._close_abandoned()
            return
        self._first_request()
        if wake:
            self._wake()

    def _first_request(self) -> None:
        """Forward what the client already sent, from here: the request then leaves
        without waiting for the loop to wake up (a new connection's largest cost)."""
        channel = self.channel
        if channel is None or not channel.active or not self.send_lock.acquire(blocking=False):
            return
        try:
            if self.done or self._close_sent or self._unsent:
                return
            try:
                data = self.sock.recv(min(self.settings.read_size, channel.out_window_size))
            except OSError:
                return  # nothing yet, or an error the loop will see
            if data:
                self._send_data(data, now=True)
        finally:
            self.send_lock.release()

    def _close_abandoned(self) -> None:
        """The client left before the server answered: close the channel from here.

        Nothing else was ever sent on it, so order is no concern; the transport's
        sender never waits when called from the transport thread (see `hooks`). Called
        under the transport's lock (paramiko's answer handlers hold it): a refused
        channel is forgotten without taking it again, which deadlocked the transport.
        """
        channel = self.channel
        assert channel is not None
        mark_closed(channel)
        if channel.active and self.hooks.transport.is_active():
            message = Message()
            message.add_byte(cMSG_CHANNEL_CLOSE)
            message.add_int(channel.remote_chanid)
            with contextlib.suppress(*SEND_ERRORS):
                if not self.hooks.send_now(message):
                    self.hooks.send_deferred(message)  # queued behind the key exchange
        else:
            self.hooks.forget(channel, answering=True)

    def feed(self, data: bytes | memoryview) -> None:
        hold = self.hooks.more_coming()
        with self.lock:
            if self._sock_closed or self._client_failed:
                return  # the client is gone; the loop is closing the channel
            self._out.append(data)
            if self._blocked:
                return  # the loop writes when the client's socket takes more
            if hold:
                # More packets are already read: send them together, before the next read.
                if not self._held:
                    self._held = True
                    self.hooks.hold_until_read(self)
                return
            action = self._after_write_locked()
        self._then(action)

    def flush_held(self) -> None:
        """The transport is about to read again: send what `feed` held back."""
        with self.lock:
            self._held = False
            if self._sock_closed or self._blocked or not self._out:
                return
            action = self._after_write_locked()
        self._then(action)

    def _after_write_locked(self) -> int:
        """Write `_out`; then `_WAKE` if the loop must now look (blocked, failed, or the
        server's end can be passed on), `_ADJUST` if only window is due, else 0."""
        self._write_out_locked()
        if self._blocked or self._client_failed or (self._ended and not self._out):
            return _WAKE if self._wake_locked() else 0
        return _ADJUST if self._unacked >= self._adjust_at else 0

    def _then(self, action: int) -> None:
        """Outside `lock`: wake the loop, or grant the window from here if only that is due
        (in a download that was a wake-up of the loop every 200 KiB)."""
        if action == _ADJUST and not self._acknowledge_from_here():
            with self.lock:
                action = _WAKE if self._wake_locked() else 0
        if action == _WAKE:
            self._wake()

    def _acknowledge_from_here(self) -> bool:
        """Send the window adjust the client's progress earned, if this channel's sender
        is free and no key exchange holds sending back; False to leave it to the loop."""
        channel = self.channel
        if channel is None or not self.send_lock.acquire(blocking=False):
            return False
        try:
            if self.done or self._close_sent or channel.closed:
                return False  # the loop is ending the channel; it looks anyway
            with self.lock:
                amount = self._unacked if self._unacked >= self._adjust_at else 0
                self._unacked -= amount
            if not amount:
                return True
            message = Message()
            message.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
            message.add_int(channel.remote_chanid)
            message.add_int(amount)
            try:
                sent = self.hooks.send_now(message)
            except SEND_ERRORS:
                sent = False  # the loop finds the transport gone
            if not sent:
                with self.lock:
                    self._unacked += amount
            return sent
        finally:
            self.send_lock.release()

    def ended(self) -> None:
        with self.lock:
            if self._held and not self._sock_closed and not self._blocked:
                self._write_out_locked()  # the last data before the end, sent first
            self._held = False
            self._ended = True
            wake = self._wake_locked()
            forget = self._abandoned and not self._answered
        if forget and self.channel is not None:
            self.hooks.forget(self.channel)  # the transport ended before the answer
        elif wake:
            self._wake()

    def window_grew(self) -> None:
        if self._window_waiting:
            with self.lock:
                wake = self._wake_locked()
            if wake:
                self._wake()

    def request_needs_reply(self) -> None:
        with self.lock:
            self._replies_due += 1
            wake = self._wake_locked()
        if wake:
            self._wake()

    def close_received(self) -> None:
        with self.lock:
            self._close_received = True
            forget = self._close_sent
            wake = self._wake_locked()
        channel = self.channel
        if forget and channel is not None:
            self.hooks.forget(channel)
        elif wake:
            self._wake()
