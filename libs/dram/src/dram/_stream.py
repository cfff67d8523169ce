"""A tiny framed-stream protocol the driver talks through, and a plain-TCP implementation.

The driver needs only ``send(frame)``, ``receive() -> frame`` and ``aclose()``: exactly the shape
of meshnet's mutually authenticated ``FramedStream`` (``meshnet.connect`` / ``MeshServer``), which
is what nodes use. ``TcpFrameStream`` (u32le length prefix, bounded) is for loopback benchmarks
and tests only: it is NOT authenticated; see docs/dram.md "Limits and known gaps".
"""

from __future__ import annotations

import struct
from typing import Protocol

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

import meshnet

from ._errors import DramDecodeError

__all__ = ["FrameStream", "TcpFrameStream", "connect_tcp", "STREAM_ERRORS", "STREAM_OR_DECODE_ERRORS"]

_LEN = struct.Struct("<I")
#: what a peer going away looks like on a stream (the driver treats them all as "connection lost");
#: meshnet's errors cover its authenticated FramedStream (closed stream, bad or oversized frame)
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    meshnet.MeshnetError,
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)
#: plus a peer that sent a malformed frame
STREAM_OR_DECODE_ERRORS: tuple[type[BaseException], ...] = (*STREAM_ERRORS, DramDecodeError)


class FrameStream(Protocol):
    async def send(self, frame: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def aclose(self) -> None: ...


class TcpFrameStream:
    """Length-prefixed frames over a TCP socket; frames above ``max_frame`` are refused."""

    def __init__(self, stream: SocketStream, max_frame: int) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._max = max_frame

    async def send(self, frame: bytes) -> None:
        if len(frame) > self._max:
            raise DramDecodeError(f"outgoing frame of {len(frame)} bytes exceeds max_frame={self._max}")
        await self._stream.send(_LEN.pack(len(frame)) + frame)

    async def receive(self) -> bytes:
        (n,) = _LEN.unpack(await self._reader.receive_exactly(_LEN.size))
        if n > self._max:
            raise DramDecodeError(f"incoming frame of {n} bytes exceeds max_frame={self._max}")
        return await self._reader.receive_exactly(n)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def connect_tcp(host: str, port: int, max_frame: int) -> TcpFrameStream:
    return TcpFrameStream(await anyio.connect_tcp(host, port), max_frame)
