"""forward.packets against paramiko's own packetizer, over a real socketpair, both ways.

These also fail loudly when paramiko's internals change shape (forward.packets and
forward.packets.retire_handshake_timer were checked against paramiko 5.1.0): the
forwarder would then quietly fall back to paramiko's slower path.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import paramiko
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from paramiko.common import MSG_CHANNEL_DATA, MSG_CHANNEL_EOF, MSG_IGNORE, cMSG_CHANNEL_EOF
from paramiko.message import Message
from paramiko.packet import Packetizer

from remote_runtime.forward import packets
from remote_runtime.ssh.streams import ReadAheadSocket


class Owner:
    def __init__(self) -> None:
        self.fed: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.fed.append(data)


class FakeTransport:
    _expected_packet: tuple[int, ...] = ()


def gcm_pair(fast_writer: bool, fast_reader: bool, owners: dict[int, Any]
             ) -> tuple[Any, Any, list[socket.socket]]:
    """A writer and a reader packetizer sharing AES-GCM keys over a socketpair."""
    a, b = socket.socketpair()
    writer: Any = Packetizer(ReadAheadSocket(a))
    reader: Any = Packetizer(ReadAheadSocket(b))
    key, iv = os.urandom(16), os.urandom(12)
    writer.set_outbound_cipher(AESGCM(key), 16, None, 16, b"", aead=True, iv_out=iv)
    reader.set_inbound_cipher(AESGCM(key), 16, None, 16, b"", aead=True, iv_in=iv)
    writer._initial_kex_done = reader._initial_kex_done = True
    if fast_writer:
        assert packets.install(writer, {}, FakeTransport())
    if fast_reader:
        assert packets.install(reader, owners, FakeTransport())
    return writer, reader, [a, b]


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def data_message(chanid: int, data: bytes) -> Message:
    message = Message()
    message.add_byte(bytes((MSG_CHANNEL_DATA,)))
    message.add_int(chanid)
    message.add_string(data)
    return message


def test_paramiko_still_has_the_shape_forward_packets_relies_on() -> None:
    a, b = socket.socketpair()
    try:
        packetizer = Packetizer(ReadAheadSocket(a))
        missing = [name for name in packets.ATTRIBUTES if not hasattr(packetizer, name)]
        assert not missing, f"paramiko {paramiko.__version__} changed: {missing}"
        assert packets.fits(packetizer)
        for name in ("_Packetizer__timer", "_Packetizer__handshake_complete"):
            assert hasattr(packetizer, name), f"paramiko {paramiko.__version__}: no {name}"
    finally:
        a.close()
        b.close()
    with socket.socket() as unused:
        transport: Any = paramiko.Transport(unused)
        assert isinstance(transport._expected_packet, tuple)  # read by the short path
    # The transport loop reads with read_message and skips an IGNORE (what a packet fed
    # straight to its owner returns), and calls complete_handshake after every packet.
    run = inspect.getsource(paramiko.Transport.run)
    assert "self.packetizer.read_message()" in run
    assert "if ptype == MSG_IGNORE:" in run
    assert "self.packetizer.complete_handshake()" in run
    assert "if self.__timer:" in inspect.getsource(Packetizer.complete_handshake)
    assert "self.packetizer.send_message(data)" in inspect.getsource(
        paramiko.Transport._send_message)


def test_what_the_short_path_sends_paramiko_reads(sockets: list[socket.socket]) -> None:
    writer, reader, made = gcm_pair(True, False, {})
    sockets.extend(made)
    sizes = [0, 1, 11, 12, 13, 15, 16, 17, 64, 1000, 32000]
    for i, size in enumerate(sizes):
        body = os.urandom(size)
        if i % 2:
            writer.send_message(packets.channel_data(7 + i, body))
        else:
            writer.send_message(data_message(7 + i, body))
        kind, message = reader.read_message()
        assert kind == MSG_CHANNEL_DATA
        assert message.get_int() == 7 + i
        assert message.get_binary() == body
    eof = Message()
    eof.add_byte(cMSG_CHANNEL_EOF)
    eof.add_int(3)
    writer.send_message(eof)
    kind, message = reader.read_message()
    assert (kind, message.get_int()) == (MSG_CHANNEL_EOF, 3)
    assert (writer._Packetizer__sequence_number_out
            == reader._Packetizer__sequence_number_in == len(sizes) + 1)
    assert writer._Packetizer__iv_out == reader._Packetizer__iv_in


def test_what_paramiko_sends_the_short_path_reads(sockets: list[socket.socket]) -> None:
    owner = Owner()
    writer, reader, made = gcm_pair(False, True, {5: owner})
    sockets.extend(made)
    big = os.urandom(200_000)  # more than the socket holds: read in pieces, then decrypted
    sender = threading.Thread(target=writer.send_message, args=(data_message(9, big),))
    sender.start()
    kind, message = reader.read_message()
    sender.join()
    assert (kind, message.get_int(), message.get_binary()) == (MSG_CHANNEL_DATA, 9, big)
    for size in (0, 1, 64, 31000):
        body = os.urandom(size)
        writer.send_message(data_message(5, body))  # ours: straight to the owner
        assert reader.read_message()[0] == MSG_IGNORE
        assert owner.fed[-1] == body
        writer.send_message(data_message(6, body))  # not ours: paramiko's message
        kind, message = reader.read_message()
        assert (kind, message.get_int(), message.get_binary()) == (MSG_CHANNEL_DATA, 6, body)
        assert message.seqno == reader._Packetizer__sequence_number_in - 1
    # paramiko's own path (as during a re-key) and the short one keep one sequence and IV.
    reader._Packetizer__need_rekey = True
    writer.send_message(data_message(5, b"slow"))
    kind, message = reader.read_message()
    assert (kind, message.get_int(), message.get_binary()) == (MSG_CHANNEL_DATA, 5, b"slow")
    reader._Packetizer__need_rekey = False
    writer.send_message(data_message(5, b"fast"))
    assert reader.read_message()[0] == MSG_IGNORE and owner.fed[-1] == b"fast"
    assert writer._Packetizer__sequence_number_out == reader._Packetizer__sequence_number_in
    assert reader._Packetizer__received_packets == 11  # 1 + 4 * 2 + 2


def test_a_tampered_packet_is_refused(sockets: list[socket.socket]) -> None:
    owner = Owner()
    writer, reader, made = gcm_pair(False, True, {5: owner})
    sockets.extend(made)
    writer._Packetizer__iv_out = os.urandom(12)  # the reader cannot authenticate it
    writer.send_message(data_message(5, b"forged"))
    with pytest.raises(InvalidTag):
        reader.read_message()
    assert owner.fed == []


def test_the_finished_handshake_timer_is_dropped(sockets: list[socket.socket]) -> None:
    a, b = socket.socketpair()
    sockets.extend([a, b])
    transport: Any = paramiko.Transport(a)
    packetizer: Any = transport.packetizer
    packetizer.start_handshake(30)
    assert not packets.retire_handshake_timer(transport)  # not finished yet: left alone
    packetizer.complete_handshake()
    assert packets.retire_handshake_timer(transport)
    assert not packetizer._Packetizer__timer
    assert not packetizer.handshake_timed_out()
    packetizer.complete_handshake()  # paramiko's per-packet call is now a no-op
