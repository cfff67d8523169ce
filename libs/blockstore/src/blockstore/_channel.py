"""Byte channels between a front end and a storage node, and the framing on top of them.

Replication bodies are length-prefixed (u32 little-endian) into one byte stream. The stream runs
over meshnet's ``FramedStream`` (mutually authenticated TLS 1.3 with network isolation; used
whenever credentials are given), each meshnet frame carrying any slice of the stream, or over plain
TCP for single-host tests and benchmarks only (no authentication, no encryption). Either way, many
pipelined requests or replies travel in one write, and a body larger than a meshnet frame simply
spans several.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Protocol

import anyio
import anyio.abc

from meshnet import MeshnetError

from ._errors import ReplicaUnavailableError
from ._wire import MAX_FRAME, FrameDecoder

__all__ = ["ByteChannel", "TcpChannel", "BodyStream"]

_LEN = struct.Struct("<I")  # the frame length prefix (see _wire.frame)
# Slices sent per meshnet frame: well under meshnet's default 16 MiB frame limit.
_SLICE = 4 << 20


class ByteChannel(Protocol):
    """Anything with send/receive of byte chunks: meshnet's FramedStream, or :class:`TcpChannel`."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def aclose(self) -> None: ...


class TcpChannel:
    """A plain TCP byte stream as a :class:`ByteChannel`."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        await self._stream.send(data)

    async def receive(self) -> bytes:
        return await self._stream.receive(1 << 20)

    async def aclose(self) -> None:
        await self._stream.aclose()


class BodyStream:
    """Length-prefixed bodies over a :class:`ByteChannel`; all transport errors become
    :class:`ReplicaUnavailableError`, malformed framing becomes :class:`WireError`."""

    def __init__(self, channel: ByteChannel, max_frame: int = MAX_FRAME) -> None:
        self._channel = channel
        self._decoder = FrameDecoder(max_frame)

    async def send_many(self, bodies: list[bytes]) -> None:
        await self.send_gathered([[body] for body in bodies])

    async def send_gathered(self, bodies: list[list[bytes]]) -> None:
        """Send bodies each given as a list of parts (a header, entries, block data...).

        Parts are joined once, with the length prefixes, into the bytes handed to the channel:
        joining each body first and then the stream would copy every block twice.
        """
        parts: list[bytes] = []
        pack = _LEN.pack
        for body in bodies:
            parts.append(pack(sum(map(len, body))))
            parts.extend(body)
        data = b"".join(parts)
        try:
            for start in range(0, len(data), _SLICE):
                await self._channel.send(data[start : start + _SLICE])
        except (  # meshnet's send can surface anyio.EndOfStream from TLS when the peer is gone
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
            MeshnetError,
        ) as exc:
            raise ReplicaUnavailableError(f"connection lost while sending: {type(exc).__name__}") from None

    def receive_nowait(self) -> bytes | memoryview | None:
        """A body already buffered, if any: lets a server answer a pipelined batch in one write."""
        return self._decoder.next_frame()

    async def receive(self) -> bytes | memoryview:
        while True:
            body = self._decoder.next_frame()
            if body is not None:
                return body
            try:
                data = await self._channel.receive()
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
                MeshnetError,
            ):
                raise ReplicaUnavailableError("connection closed") from None
            self._decoder.feed(data)

    async def aclose(self) -> None:
        with contextlib.suppress(OSError, MeshnetError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._channel.aclose()
