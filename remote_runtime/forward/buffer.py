"""A faster receive buffer for a paramiko channel: a list of chunks, not a byte array.

paramiko's BufferedPipe keeps a channel's received bytes in an ``array('B')``
and copies every byte three times on the way through. `use_chunk_buffer` swaps
that array for a `_ChunkBuffer`, which keeps the chunks as they arrive (about a
fifth of the forwarder's CPU per GB; see BENCHMARK.md). Only `forwarder`, which
swaps the buffer of every channel it opens (unless ``CHUNK_BUFFER`` is off), uses it.
"""

from __future__ import annotations

import array

import paramiko


class _ChunkBuffer:
    """Drop-in for the ``array('B')`` inside paramiko's BufferedPipe, keeping received chunks.

    paramiko copies every received byte into an array and, on read, copies it out
    twice more (a slice, then ``tobytes``). Keeping the chunks as they arrive and
    joining them once on read saves those copies; a read of one whole chunk is free.
    BufferedPipe only touches its ``_buffer`` under its lock, through
    ``frombytes``, ``len``, ``buf[:n].tobytes()`` and ``del buf[:n]``.
    """

    __slots__ = ("_chunks", "_size")

    def __init__(self, initial: bytes = b"") -> None:
        self._chunks: list[bytes] = [initial] if initial else []
        self._size = len(initial)

    def frombytes(self, data: bytes) -> None:
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: slice) -> _ChunkView:
        return _ChunkView(self, key.stop)

    def __delitem__(self, key: slice) -> None:
        stop = self._size if key.stop is None else min(key.stop, self._size)
        self._size -= stop
        chunks = self._chunks
        while stop:
            first = chunks[0]
            if len(first) <= stop:
                stop -= len(first)
                del chunks[0]
            else:
                chunks[0] = first[stop:]
                stop = 0

    def take(self, limit: int | None) -> bytes:
        chunks = self._chunks
        if limit is None or limit >= self._size:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        out = bytearray()
        for chunk in chunks:
            if len(out) + len(chunk) >= limit:
                out += chunk[: limit - len(out)]
                break
            out += chunk
        return bytes(out)


class _ChunkView:
    """What ``buffer[:n]`` returns: just enough for BufferedPipe's ``.tobytes()``."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, buffer: _ChunkBuffer, limit: int | None) -> None:
        self._buffer = buffer
        self._limit = limit

    def tobytes(self) -> bytes:
        return self._buffer.take(self._limit)


def use_chunk_buffer(channel: paramiko.Channel) -> None:
    """Swap the channel's receive array for a `_ChunkBuffer`, under the pipe's own lock.

    Does nothing if this paramiko's BufferedPipe does not look as expected.
    """
    pipe = getattr(channel, "in_buffer", None)
    lock = getattr(pipe, "_lock", None)
    if lock is None or not isinstance(getattr(pipe, "_buffer", None), array.array):
        return
    with lock:
        pipe._buffer = _ChunkBuffer(pipe._buffer.tobytes())  # type: ignore[union-attr]
