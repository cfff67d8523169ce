"""Bounded decoding of network input: length-prefixed frames and betterproto messages.

Every decoder checks sizes before parsing and turns any malformed input into `DecodeError`, so a
peer can never make us allocate more than the configured bound or see a stray ``IndexError``.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, Protocol, TypeVar

import betterproto

from meshnet._errors import DecodeError, FrameTooLargeError

__all__ = [
    "FRAME_HEADER_BYTES",
    "DEFAULT_MAX_FRAME_SIZE",
    "FrameDecoder",
    "encode_frame",
    "frame_length",
    "decode_message",
]

FRAME_HEADER_BYTES = 4
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
"""16 MiB: four 4 MiB Ceph-sized chunks fit in one frame; bigger transfers are chunked by callers."""
_HEADER = struct.Struct(">I")
_GATHER = 16 * 1024
"""Payloads at least this large are gathered from their pieces and joined once."""


class _Sink(Protocol):
    def append(self, item: bytes, /) -> None: ...


M = TypeVar("M", bound=betterproto.Message)


def frame_length(header: bytes, max_frame_size: int) -> int:
    """The payload length announced by a 4-byte big-endian header; refuses lengths above the bound."""
    if len(header) != FRAME_HEADER_BYTES:
        raise DecodeError(f"frame header must be {FRAME_HEADER_BYTES} bytes, got {len(header)}")
    (length,) = _HEADER.unpack(header)
    if length > max_frame_size:
        raise FrameTooLargeError(f"frame length {length} exceeds max_frame_size {max_frame_size}")
    return int(length)


def encode_frame(payload: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Header + payload. Refuses payloads the receiving side would refuse."""
    if len(payload) > max_frame_size:
        raise FrameTooLargeError(f"payload of {len(payload)} bytes exceeds max_frame_size {max_frame_size}")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Sans-I/O frame splitter: feed bytes as they arrive, get complete payloads out.

    It buffers at most one header plus one bounded payload, so memory stays below
    ``max_frame_size + 4`` per connection whatever the peer sends. Frames packed into one chunk
    are cut out of it in one pass; a frame of 16 KiB or more is gathered piece by piece and
    joined once (appending each TLS record and slicing the frame out again cost ~10x more for
    a 128 KiB frame).
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0 or max_frame_size > 0xFFFFFFFF:
            raise ValueError(f"max_frame_size must be in [0, 2**32-1], got {max_frame_size}")
        self.max_frame_size = max_frame_size
        self.delivered = 0
        """Payload bytes handed out so far."""
        self._buffer = bytearray()  # a header, or a header and the start of a small payload
        self._parts: list[bytes] = []  # the pieces of a big payload so far (then _buffer is empty)
        self._have = 0
        self._need = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every payload completed by it (raises `DecodeError` on a bad header)."""
        frames: list[bytes] = []
        self.feed_into(data, frames)
        return frames

    def feed_into(self, data: bytes, out: _Sink) -> None:
        """Append ``data`` and every payload it completes to ``out``, in order.

        A bad header raises `DecodeError` after the payloads before it were appended; the decoder
        then stays at that header.
        """
        if self._parts:
            room = self._need - self._have
            if len(data) < room:
                self._parts.append(data)
                self._have += len(data)
                return
            self._parts.append(data[:room])
            out.append(b"".join(self._parts))
            self.delivered += self._need
            self._parts = []
            data = data[room:]
        buf = self._buffer
        buf += data
        pos, end = 0, len(buf)
        try:
            with memoryview(buf) as view:
                while end - pos >= FRAME_HEADER_BYTES:
                    length = frame_length(bytes(view[pos : pos + FRAME_HEADER_BYTES]), self.max_frame_size)
                    start = pos + FRAME_HEADER_BYTES
                    if end - start >= length:
                        out.append(bytes(view[start : start + length]))
                        self.delivered += length
                        pos = start + length
                    elif length >= _GATHER:
                        self._parts = [bytes(view[start:end])]
                        self._have, self._need = end - start, length
                        pos = end
                        break
                    else:
                        break
        finally:
            del buf[:pos]

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a complete frame."""
        return self._have + FRAME_HEADER_BYTES if self._parts else len(self._buffer)

    @property
    def progress(self) -> tuple[int, int] | None:
        """How far the incomplete frame got, or None at a frame boundary.

        (bytes received, bytes expected) of its header while inside the header, of its payload after.
        """
        if self._parts:
            return self._have, self._need
        held = len(self._buffer)
        if not held:
            return None
        if held < FRAME_HEADER_BYTES:
            return held, FRAME_HEADER_BYTES
        return held - FRAME_HEADER_BYTES, _HEADER.unpack_from(self._buffer)[0]

    def close(self) -> None:
        """Declare end of input: raises `DecodeError` if a frame was cut short."""
        if self.pending:
            raise DecodeError(f"stream ended inside a frame ({self.pending} bytes of an incomplete frame)")


def decode_message(cls: type[M], data: bytes, *, max_bytes: int) -> M:
    """Parse ``data`` as ``cls``; any malformed input becomes `DecodeError` naming the message type."""
    if len(data) > max_bytes:
        raise FrameTooLargeError(f"{cls.__name__} of {len(data)} bytes exceeds its bound of {max_bytes}")
    try:
        message = cls().parse(data)
    except Exception as exc:  # betterproto raises many types on garbage; all mean "malformed"
        raise DecodeError(f"malformed {cls.__name__}: {type(exc).__name__}") from None
    check_field_types(message)
    return message


_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
    "enum": (-(2**31), 2**31 - 1),
}


def _scalar_ok(proto_type: str, value: Any) -> bool:
    if proto_type == "string":
        return isinstance(value, str)
    if proto_type == "bytes":
        return isinstance(value, bytes)
    if proto_type == "bool":
        return isinstance(value, bool)
    if proto_type in ("float", "double"):
        return isinstance(value, float)
    if proto_type in _INT_RANGES:
        low, high = _INT_RANGES[proto_type]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if proto_type == "message":
        return isinstance(value, betterproto.Message)
    return False  # maps and anything newer: not used by our wire messages, so refuse


def check_field_types(message: betterproto.Message) -> None:
    """Refuse a parsed message whose fields do not hold their declared types.

    betterproto does not check wire types: a varint sent where ``bytes`` is declared decodes to an
    ``int`` (found by the fuzz tests). Every decoder of network input runs this after parsing.
    """
    untyped: Any = message  # betterproto's class metadata is not typed for mypy
    defaults = untyped._betterproto.default_gen
    for field in dataclasses.fields(untyped):
        meta = betterproto.FieldMetadata.get(field)
        value = getattr(message, field.name)
        repeated = isinstance(defaults[field.name](), list)
        values = value if repeated and isinstance(value, list) else [value]
        if repeated and not isinstance(value, list):
            raise DecodeError(f"{type(message).__name__}.{field.name} must be a list")
        for item in values:
            if item is None and meta.optional:
                continue
            if not _scalar_ok(meta.proto_type, item):
                raise DecodeError(
                    f"{type(message).__name__}.{field.name} must be {meta.proto_type}, got {type(item).__name__}"
                )
            if meta.proto_type == "message":
                check_field_types(item)
