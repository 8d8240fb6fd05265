"""Where the forwarder meets paramiko's transport: channels that never block the transport.

paramiko's transport thread answers some channel messages itself, and two of its
habits end whole SSH sessions (DESIGN.md fact 13, and measured in BENCHMARK.md):

- It sends a channel's EOF and CLOSE after releasing the channel's lock, so another
  thread's DATA or EOF, built earlier, can reach the server after our CLOSE. OpenSSH's
  sshd then drops the session ("data packet referred to nonexistent channel";
  paramiko issue 1115, unmerged PR 1137).
- It waits for a key exchange to finish before it sends, and only the transport thread
  itself can finish one: a CLOSE (or a channel request wanting a reply) that arrives
  right after we started a re-key stalls it for 30 s, then ends the session.

`TransportHooks.install` gives a transport (once) its own handlers for the channels the
forwarder owns: the transport thread only records what the server said and wakes the
forwarder, which alone sends that channel's messages, from one thread, in order; its
CLOSE is the last one. Every other message the transport thread sends is sent at once,
or queued behind the key exchange for a helper thread, never waited for.

`open_channel` opens a ``direct-tcpip`` channel without waiting for the answer; the
owner hears it through `Owner.open_answered`. Received data reaches `Owner.feed` as
it arrives, instead of paramiko's buffer (`Sink`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

import paramiko
from paramiko.common import (
    MSG_CHANNEL_CLOSE,
    MSG_CHANNEL_FAILURE,
    MSG_CHANNEL_REQUEST,
    MSG_CHANNEL_SUCCESS,
    MSG_CHANNEL_WINDOW_ADJUST,
    cMSG_CHANNEL_OPEN,
)
from paramiko.message import Message

from . import packets

log = logging.getLogger(__name__)

ATTRIBUTE = "_remote_runtime_hooks"


class Owner(Protocol):
    """What the transport thread may tell a channel's owner. Each call must return at once."""

    def open_answered(self) -> None: ...
    def feed(self, data: bytes | memoryview) -> None: ...
    def ended(self) -> None: ...
    def window_grew(self) -> None: ...
    def request_needs_reply(self) -> None: ...
    def close_received(self) -> None: ...
    def flush_held(self) -> None: ...


class Sink:
    """Stands in for a channel's receive buffer (paramiko's BufferedPipe).

    The transport thread calls `feed` with every DATA payload and `close` at EOF,
    CLOSE, or when the transport dies; both go straight to the owner. Nothing is
    kept here, so nobody may `recv` from the channel.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: Owner) -> None:
        self._owner = owner

    def feed(self, data: bytes) -> None:
        self._owner.feed(data)

    def close(self) -> None:
        self._owner.ended()

    def read_ready(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def empty(self) -> bytes:
        return b""


class _Ignored:
    """Stands in for what paramiko keeps per channel and we never use: the stderr buffer
    (a server sends none on direct-tcpip), the events and the send-window condition
    (the owner is told instead)."""

    def feed(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def set(self) -> None:
        pass

    def notify_all(self) -> None:
        pass

    notify = notify_all


_IGNORED = _Ignored()


class ForwardedChannel(paramiko.Channel):
    """A paramiko channel the forwarder owns, made cheaply and never sending on its own.

    paramiko's constructor makes two buffers, two events and a condition (about 40 us
    on a busy 2-core VM, a tenth of a new connection's budget); this copies the
    attributes of one made at import, then gives each channel its own lock, id and sink.
    Garbage collection never closes it (paramiko's ``__del__`` would send a CLOSE
    from whichever thread collects it): its owner always has.
    """

    def __del__(self) -> None:
        pass


_TEMPLATE = paramiko.Channel(0).__dict__
_paramiko_channel: Any = paramiko.Channel


def _new_channel(chanid: int, owner: Owner) -> ForwardedChannel:
    channel: Any = ForwardedChannel.__new__(ForwardedChannel)
    channel.__dict__.update(_TEMPLATE)
    channel.chanid = chanid
    channel._name = str(chanid)
    channel.lock = threading.Lock()
    channel.out_buffer_cv = _IGNORED
    channel.event = channel.status_event = _IGNORED
    channel.in_buffer = Sink(owner)
    channel.in_stderr_buffer = _IGNORED
    return channel  # type: ignore[no-any-return]


def mark_closed(channel: paramiko.Channel) -> None:
    """Mark `channel` closed the way paramiko does (the owner sends the CLOSE itself)."""
    inner: Any = channel
    with channel.lock:
        if not channel.closed:
            inner._set_closed()


class _OpenAnswer:
    """Put where paramiko keeps the event `open_channel` waits on; `set` is the answer."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Owner) -> None:
        self._owner = owner

    def set(self) -> None:
        # paramiko calls this holding the transport's lock (its open success and
        # failure handlers), then deletes this event.
        self._owner.open_answered()


class TransportHooks:
    """One transport's handlers for the channels the forwarder owns."""

    @classmethod
    def install(cls, transport: paramiko.Transport) -> TransportHooks:
        """The hooks of `transport`, installed on first use."""
        with transport.lock:
            hooks = getattr(transport, ATTRIBUTE, None)
            if hooks is None:
                hooks = cls(transport)
                setattr(transport, ATTRIBUTE, hooks)
        return hooks

    def __init__(self, transport: paramiko.Transport) -> None:
        self.transport = transport
        # paramiko's private members, which its type stubs do not declare.
        self._inner: Any = cast(Any, transport)
        self._owners: dict[int, Owner] = {}
        self._deferred: collections.deque[Message] = collections.deque()
        self._deferred_lock = threading.Lock()
        self._sender: threading.Thread | None = None
        self._send_waiting: Callable[[Message | bytes], None] = self._inner._send_user_message
        # A read-ahead socket under the transport (ssh.streams) tells us when more packets
        # are already read, and calls us before it reads again: data for the clients is
        # then sent in one system call per burst instead of one per packet.
        self._held: list[Owner] = []
        sock = getattr(transport, "sock", None)
        self._read_ahead: Any = sock if hasattr(sock, "buffered") else None
        if self._read_ahead is not None:
            self._read_ahead.before_read = self._flush_held
        table = dict(type(self._inner)._channel_handler_table)
        for kind, handler in (
            (MSG_CHANNEL_CLOSE, self._on_close),
            (MSG_CHANNEL_WINDOW_ADJUST, self._on_window_adjust),
            (MSG_CHANNEL_REQUEST, self._on_request),
            (MSG_CHANNEL_SUCCESS, self._on_request_answer),
            (MSG_CHANNEL_FAILURE, self._on_request_answer),
        ):
            table[kind] = self._for_owned(handler, table[kind])
        # Instance attributes shadow the class's: only this transport changes.
        self._inner._channel_handler_table = table
        self._inner._send_user_message = self._send_user_message
        packets.retire_handshake_timer(transport)
        # AES-GCM packets for our channels skip paramiko's Message and dispatch (`packets`).
        # With it, messages may also be sent as bytes (`raw_messages`).
        self.raw_messages = packets.install(self._inner.packetizer, self._owners, self._inner)
        if not self.raw_messages:
            log.debug("paramiko's packetizer is not the one forward.packets knows; not used")

    # -- channels -----------------------------------------------------------------------------

    def open_channel(
        self,
        owner: Owner,
        dest: tuple[str, int],
        origin: tuple[str, int],
        *,
        window_size: int,
        max_packet_size: int,
    ) -> paramiko.Channel:
        """Ask for a ``direct-tcpip`` channel to `dest`; return it unopened, at once.

        paramiko's own `open_channel` with the wait left out: the answer calls
        `owner.open_answered()` from the transport thread; the channel is open when
        its `active` is true, refused when the transport no longer holds it.

        Raises:
            paramiko.SSHException: the transport is not active.
        """
        transport = self._inner
        if not transport.is_active():
            raise paramiko.SSHException("SSH session not active")
        with transport.lock:
            window_size = transport._sanitize_window_size(window_size)
            max_packet_size = transport._sanitize_packet_size(max_packet_size)
            chanid = transport._next_channel()
            message = Message()
            message.add_byte(cMSG_CHANNEL_OPEN)
            message.add_string("direct-tcpip")
            message.add_int(chanid)
            message.add_int(window_size)
            message.add_int(max_packet_size)
            message.add_string(dest[0])
            message.add_int(dest[1])
            message.add_string(origin[0])
            message.add_int(origin[1])
            channel: Any = _new_channel(chanid, owner)
            self._owners[chanid] = owner
            transport._channels.put(chanid, channel)
            transport.channel_events[chanid] = _OpenAnswer(owner)
            transport.channels_seen[chanid] = True
            channel._set_transport(transport)
            channel._set_window(window_size, max_packet_size)
        if threading.get_ident() == transport.ident:
            self.send_deferred(message)  # the transport thread never waits for a key exchange
        else:
            self.send(message)  # at once, unless a key exchange is under way
        return channel  # type: ignore[no-any-return]

    def forget(self, channel: paramiko.Channel, *, answering: bool = False) -> None:
        """Both sides closed `channel` (or it never opened): drop every record of it.

        With `answering`, from inside paramiko's handling of the open's answer: the
        transport thread holds the transport's lock there (taking it again would
        deadlock), and paramiko removes the channel's open event itself right after.
        """
        transport = self._inner
        with contextlib.nullcontext() if answering else transport.lock:
            self._owners.pop(channel.chanid, None)
            if not answering:
                transport.channel_events.pop(channel.chanid, None)
            # paramiko keeps every id it ever used, to ignore late messages; after both
            # CLOSEs none can come, and a long-lived tunnel would grow it without end.
            transport.channels_seen.pop(channel.chanid, None)
        transport._unlink_channel(channel.chanid)
        # The sink refers to the owner, which refers to the channel: break that cycle, so
        # the connection is freed now rather than by a full garbage collection, which a
        # busy tunnel runs too seldom to keep its memory flat.
        inner: Any = channel
        inner.in_buffer = _IGNORED

    def more_coming(self) -> bool:
        """From the transport thread: more packets are already read and about to be handled."""
        read_ahead = self._read_ahead
        return read_ahead is not None and read_ahead.buffered() > 0

    def hold_until_read(self, owner: Owner) -> None:
        """From the transport thread: call `owner.flush_held()` before the next read."""
        self._held.append(owner)

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for owner in held:
            try:
                owner.flush_held()
            except Exception:  # the transport's reader must go on whatever happened
                log.exception("forwarder: sending held data failed")

    def send_deferred(self, message: Message) -> None:
        """Send from the transport thread: now, or behind a key exchange (never waits)."""
        self._send_user_message(message)

    def send_now(self, message: Message | bytes) -> bool:
        """Send without waiting for a key exchange (from any thread); False if one is on."""
        transport = self._inner
        with transport.clear_to_send_lock:
            if not transport.clear_to_send.is_set() or not transport.active:
                return False
            transport._send_message(message)
        return True

    def send(self, message: Message | bytes) -> None:
        """Send from the forwarder's thread (may wait for a key exchange to finish).

        Raises:
            EOFError: the transport has ended (paramiko would drop the message).
            paramiko.SSHException: a key exchange did not finish in time.
        """
        if not self.send_now(message):
            if not self.transport.is_active():
                raise EOFError("the SSH session has ended")
            self._send_waiting(message)  # a key exchange is under way: wait it out

    # -- the transport thread -------------------------------------------------------------------

    def _for_owned(
        self,
        ours: Callable[[Any, Owner, Message], None],
        theirs: Callable[[Any, Message], None],
    ) -> Callable[[Any, Message], None]:
        owners = self._owners

        def handler(channel: Any, message: Message) -> None:
            owner = owners.get(channel.chanid)
            if owner is None:
                theirs(channel, message)
            else:
                ours(channel, owner, message)

        return handler

    def _on_close(self, channel: Any, owner: Owner, message: Message) -> None:
        mark_closed(channel)  # wakes the owner through the sink
        owner.close_received()

    def _on_window_adjust(self, channel: Any, owner: Owner, message: Message) -> None:
        _paramiko_channel._window_adjust(channel, message)
        owner.window_grew()

    def _on_request(self, channel: Any, owner: Owner, message: Message) -> None:
        # The only requests a server sends on a direct-tcpip channel are keepalives
        # (sshd's ClientAliveInterval): refused, as OpenSSH's client does, by the owner.
        message.get_text()
        if message.get_boolean():
            owner.request_needs_reply()

    def _on_request_answer(self, channel: Any, owner: Owner, message: Message) -> None:
        pass  # we send no requests on these channels

    def _send_user_message(self, message: Message) -> None:
        """paramiko's own sender, except that the transport thread never waits in it."""
        transport = self._inner
        if threading.get_ident() != transport.ident:
            self._send_waiting(message)
            return
        with self._deferred_lock:
            if not self._deferred:
                with transport.clear_to_send_lock:
                    if transport.clear_to_send.is_set():
                        transport._send_message(message)
                        return
            # A key exchange is under way, and only this thread can finish it.
            self._deferred.append(message)
            if self._sender is None:
                self._sender = threading.Thread(
                    target=self._send_deferred, name="ssh-deferred-send", daemon=True
                )
                self._sender.start()

    def _send_deferred(self) -> None:
        while True:
            with self._deferred_lock:
                if not self._deferred or not self.transport.is_active():
                    self._deferred.clear()
                    self._sender = None
                    return
                message = self._deferred[0]
            # Removed only once sent: until then the transport thread queues behind it.
            with contextlib.suppress(Exception):
                self._send_waiting(message)
            with self._deferred_lock:
                self._deferred.popleft()
