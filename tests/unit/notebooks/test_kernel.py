"""The kernel websocket's frames: JSON text, and the server's binary layout for messages
with buffers."""

from __future__ import annotations

import json
import struct

import websocket

from remote_runtime.notebooks.kernel import _decode


def binary(message: dict[str, object], *buffers: bytes) -> bytes:
    """As the Jupyter server writes it: n offsets, the offsets, the JSON, the buffers."""
    body = json.dumps(message).encode()
    count = 1 + len(buffers)
    offsets, position = [], 4 + 4 * count
    for part in (body, *buffers):
        offsets.append(position)
        position += len(part)
    return struct.pack(f"!I{count}I", count, *offsets) + body + b"".join(buffers)


def test_text_and_binary_frames() -> None:
    message = {"channel": "iopub", "header": {"msg_type": "comm_msg"}, "content": {}}
    assert _decode(websocket.ABNF.OPCODE_TEXT, json.dumps(message).encode()) == message
    decoded = _decode(websocket.ABNF.OPCODE_BINARY, binary(message, b"abc", b"\x00\x01"))
    assert decoded is not None
    assert [bytes(b) for b in decoded.pop("buffers")] == [b"abc", b"\x00\x01"]
    assert decoded == message
    assert _decode(websocket.ABNF.OPCODE_PONG, b"") is None
