"""A shorter receive path through paramiko's packetizer for AES-GCM sessions.

paramiko reads each packet in two socket reads, joins them (a copy), decrypts, wraps
the payload in a `Message`, and its transport thread then looks the channel up (under
a lock) and parses the DATA message again before our sink sees the bytes. On a
kept-alive request that was about a third of the transport thread's Python time.

`FastPacketizer` replaces `Packetizer.read_message` only for what a forwarded
session spends its time on: an AES-GCM packet, after the initial key exchange, with
no compression, no packet dump and no re-key pending. It decrypts straight from the
read-ahead socket's buffer (`ssh.streams.ReadAheadSocket.take`) when the whole packet
is already there, and hands the data of a CHANNEL_DATA for a channel the forwarder
owns straight to its owner, returning an ignorable message to the transport loop
(which then checks for a re-key and reads on, as after any packet). Everything else,
and any state it does not expect, goes through paramiko's own `read_message`.

`FastPacketizer.send_message` likewise builds and encrypts an AES-GCM packet in one
step, and also takes a message's bytes instead of a `Message` (`channel_data` makes
one for a DATA packet): the forwarder's requests then skip paramiko's `Message`
(a BytesIO per packet) and the packetizer's per-packet bookkeeping it does not need.

The state it keeps is paramiko's own (sequence number, IV, re-key counters), read
and written by name, so a re-key, strict-kex sequence resets and paramiko's own
path interleave with it freely. `retire_handshake_timer` stops paramiko from
cancelling its finished handshake timer after every packet. Checked against paramiko
5.1.0; `fits` says whether a packetizer still has the shape this relies on (installed
only then), and tests/unit/forward/test_packets.py fails loudly if paramiko's
internals change.
"""

from __future__ import annotations

import os
from typing import Any

from paramiko.common import MSG_CHANNEL_DATA, MSG_IGNORE, xffffffff
from paramiko.message import Message
from paramiko.packet import Packetizer
from paramiko.ssh_exception import SSHException
from paramiko.transport import Transport

# paramiko's private attributes this module reads or writes (name-mangled).
ATTRIBUTES = tuple(
    f"_Packetizer__{name}"
    for name in (
        "socket", "aead_in", "block_engine_in", "mac_size_in", "iv_in", "sequence_number_in",
        "compress_engine_in", "dump_packets", "need_rekey", "remainder", "received_bytes",
        "received_packets", "received_bytes_overflow", "received_packets_overflow",
        "aead_out", "block_engine_out", "block_size_out", "iv_out", "sequence_number_out",
        "compress_engine_out", "write_lock", "sent_bytes", "sent_packets",
    )
)
_IGNORED = Message(b"")
# Payloads up to this size are copied out of the packet, larger ones are viewed.
COPY_BELOW = 2048
# Bytes of os.urandom drawn at once for packets' padding (at most 19 bytes a packet).
RANDOM_POOL = 4096


def fits(packetizer: Any) -> bool:
    """Whether `packetizer` is paramiko's, with every attribute this path uses."""
    return (type(packetizer) is Packetizer
            and all(hasattr(packetizer, name) for name in ATTRIBUTES)
            and hasattr(packetizer, "_initial_kex_done")
            and hasattr(packetizer, "_trigger_rekey")
            and callable(getattr(getattr(packetizer, "_Packetizer__socket", None), "take", None)))


def install(packetizer: Any, owners: dict[int, Any], transport: Any) -> bool:
    """Give `packetizer` the short path; `owners` maps our channel ids to their owners
    (`hooks.Owner`). False (nothing changed) if it does not have the expected shape."""
    if not fits(packetizer) or not isinstance(getattr(transport, "_expected_packet", None),
                                              tuple):
        return False
    packetizer._rr_owners = owners
    packetizer._rr_transport = transport
    packetizer._rr_random = b""
    packetizer._rr_random_used = RANDOM_POOL
    packetizer.__class__ = FastPacketizer
    return True


class FastPacketizer(Packetizer):
    """paramiko's Packetizer with a short path for AES-GCM packets (see the module)."""

    _rr_owners: dict[int, Any]
    _rr_transport: Any

    def read_message(self) -> tuple[int, Message]:
        me: Any = self  # paramiko's private attributes, which its type stubs do not declare
        if (not me._Packetizer__aead_in or me._Packetizer__need_rekey
                or me._Packetizer__compress_engine_in is not None
                or me._Packetizer__dump_packets or me._Packetizer__remainder
                or not me._initial_kex_done):
            return super().read_message()
        # paramiko's reader waits, keeps alive and notices a re-key as before.
        aad = me.read_all(4, check_rekey=True)
        packet_size = int.from_bytes(aad, "big")
        need = packet_size + me._Packetizer__mac_size_in
        sock = me._Packetizer__socket
        body = sock.take(need)
        if body is None:
            body = me.read_all(need)
        iv = me._Packetizer__iv_in
        plain = me._Packetizer__block_engine_in.decrypt(iv, body, aad)
        # The counter is the IV's last 8 bytes (RFC 5647 section 7.1), as paramiko does it.
        me._Packetizer__iv_in = iv[:4] + ((int.from_bytes(iv[4:], "big") + 1)
                                            & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        seqno = me._Packetizer__sequence_number_in
        me._Packetizer__sequence_number_in = (seqno + 1) & xffffffff
        me._Packetizer__received_bytes += packet_size + me._Packetizer__mac_size_in + 4
        me._Packetizer__received_packets += 1
        if (me._Packetizer__received_packets >= self.REKEY_PACKETS
                or me._Packetizer__received_bytes >= self.REKEY_BYTES):
            me._Packetizer__received_bytes_overflow = 0
            me._Packetizer__received_packets_overflow = 0
            me._trigger_rekey()
        end = packet_size - plain[0]  # the padding's length comes first
        if plain[1] == MSG_CHANNEL_DATA and end >= 10 and not me._rr_transport._expected_packet:
            owner = me._rr_owners.get(int.from_bytes(plain[2:6], "big"))
            size = int.from_bytes(plain[6:10], "big")
            if owner is not None and 10 + size <= end:
                # A large payload is passed on as a view: one copy of it less (the
                # client's socket takes views as well as bytes).
                owner.feed(plain[10:10 + size] if size <= COPY_BELOW
                           else memoryview(plain)[10:10 + size])
                return MSG_IGNORE, _IGNORED
        message = Message(plain[2:end])
        message.seqno = seqno
        return plain[1], message

    def send_message(self, data: Message | bytes) -> None:
        """paramiko's `send_message`, shorter for AES-GCM; `data` may be a message's bytes."""
        me: Any = self
        if (not me._Packetizer__aead_out or me._Packetizer__compress_engine_out is not None
                or me._Packetizer__dump_packets):
            super().send_message(Message(data) if isinstance(data, bytes) else data)
            return
        payload = data if isinstance(data, bytes) else data.asbytes()
        block = me._Packetizer__block_size_out
        padding = 3 + block - ((len(payload) + 4) % block)
        length = (len(payload) + padding + 1).to_bytes(4, "big")
        with me._Packetizer__write_lock:
            # Random padding as paramiko's (os.urandom), drawn from a pool: one system
            # call per few hundred packets instead of one per packet.
            start = me._rr_random_used
            if start + padding > RANDOM_POOL:
                me._rr_random = os.urandom(RANDOM_POOL)
                start = 0
            me._rr_random_used = start + padding
            plain = b"".join((padding.to_bytes(1, "big"), payload,
                              me._rr_random[start:start + padding]))
            iv = me._Packetizer__iv_out
            out = length + me._Packetizer__block_engine_out.encrypt(iv, plain, length)
            me._Packetizer__iv_out = iv[:4] + ((int.from_bytes(iv[4:], "big") + 1)
                                                 & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
            seqno = (me._Packetizer__sequence_number_out + 1) & xffffffff
            if seqno == 0 and not me._initial_kex_done:
                raise SSHException("Sequence number rolled over during initial kex!")
            me._Packetizer__sequence_number_out = seqno
            me.write_all(out)
            me._Packetizer__sent_bytes += len(out)
            me._Packetizer__sent_packets += 1
            if ((me._Packetizer__sent_packets >= self.REKEY_PACKETS
                    or me._Packetizer__sent_bytes >= self.REKEY_BYTES)
                    and not me._Packetizer__need_rekey):
                me._Packetizer__received_bytes_overflow = 0
                me._Packetizer__received_packets_overflow = 0
                me._trigger_rekey()


_DATA_HEADER = bytes((MSG_CHANNEL_DATA,))


def channel_data(remote_chanid: int, data: bytes | memoryview) -> bytes:
    """The bytes of a CHANNEL_DATA message (for `FastPacketizer.send_message`)."""
    return b"".join((_DATA_HEADER, remote_chanid.to_bytes(4, "big"),
                     len(data).to_bytes(4, "big"), data))


class _NoTimer:
    """Stands in for the packetizer's handshake timer once the handshake is over: false,
    so paramiko skips it, and with a `cancel` for a reader that saw the real one first."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def cancel(self) -> None:
        pass


def retire_handshake_timer(transport: Transport) -> bool:
    """Stop paramiko from cancelling its finished handshake timer after every packet.

    paramiko 5.1's transport thread calls ``Packetizer.complete_handshake`` after each
    packet it reads, which cancels the timer again (an Event and a Condition each time,
    about 8% of the transport thread's Python time on a kept-alive request): the timer
    is never dropped. Once the handshake is complete, put a false stand-in in its place.
    Returns False (and changes nothing) if the handshake is not complete yet.
    """
    packetizer: Any = transport.packetizer
    if not packetizer._Packetizer__handshake_complete:
        return False
    timer = packetizer._Packetizer__timer
    if timer:
        timer.cancel()
    packetizer._Packetizer__timer = _NO_TIMER
    return True


_NO_TIMER = _NoTimer()
