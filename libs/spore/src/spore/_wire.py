"""A small, bounded protobuf wire codec for the gossip hot path (`Envelope` in spore.proto).

Why not the betterproto classes here: betterproto is pure Python with heavy attribute magic
(~0.5 ms per small message on our machines), and a gossip node handles tens of messages per
second per peer; the simulator handles millions. This module reads and writes the SAME wire
format as the betterproto classes generated from spore.proto (a differential hypothesis test
checks both directions), with bounds enforced while parsing rather than after. Records inside
updates stay opaque bytes here and go through the cached betterproto decoder in `_codec`.
"""

from __future__ import annotations

from collections.abc import Iterator

from spore._errors import DecodeError

__all__ = ["Writer", "fields", "read_bytes", "read_str", "read_uint"]

_MAX_VARINT_BYTES = 10


class Writer:
    """Appends proto3 fields; zero/empty scalars are omitted as proto3 encoders do."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def _varint(self, value: int) -> None:
        buf = self.buf
        while value > 0x7F:
            buf.append((value & 0x7F) | 0x80)
            value >>= 7
        buf.append(value)

    def uint(self, field: int, value: int) -> None:
        if value:
            self._varint(field << 3)
            self._varint(value)

    def bytes_(self, field: int, value: bytes, *, always: bool = False) -> None:
        if value or always:
            self._varint((field << 3) | 2)
            self._varint(len(value))
            self.buf.extend(value)

    def str_(self, field: int, value: str) -> None:
        self.bytes_(field, value.encode())

    def message(self, field: int, inner: Writer) -> None:
        """An embedded message; written even when empty (oneof members and repeated entries)."""
        self.bytes_(field, bytes(inner.buf), always=True)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] < 0x80:  # one-byte fast path: tags, lengths, states
        return buf[pos], pos + 1
    result = 0
    shift = 0
    end = min(len(buf), pos + _MAX_VARINT_BYTES)
    while pos < end:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    raise DecodeError("truncated or over-long varint")


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) for every field: int for varints, bytes for length-delimited.

    Fixed-width fields are skipped (spore.proto has none; unknown fields are ignored as proto3
    requires). Groups and field number 0 are errors.
    """
    pos, n = 0, len(buf)
    while pos < n:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0 is invalid")
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
            yield number, value
        elif wire_type == 2:
            if pos < n and buf[pos] < 0x80:
                length, pos = buf[pos], pos + 1
            else:
                length, pos = _read_varint(buf, pos)
            if length > n - pos:
                raise DecodeError(f"field {number} claims {length} bytes, only {n - pos} remain")
            yield number, bytes(buf[pos : pos + length])
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type} for field {number}")
        if pos > n:
            raise DecodeError("truncated fixed-width field")


def read_uint(number: int, value: int | bytes, bits: int) -> int:
    if not isinstance(value, int):
        raise DecodeError(f"field {number} must be a varint")
    if value >= 1 << bits:
        raise DecodeError(f"field {number} does not fit in uint{bits}")
    return value


def read_str(number: int, value: int | bytes, max_len: int) -> str:
    if not isinstance(value, bytes):
        raise DecodeError(f"field {number} must be length-delimited")
    if len(value) > max_len:
        raise DecodeError(f"field {number} is {len(value)} bytes, at most {max_len} allowed", "oversized")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"field {number} is not valid UTF-8") from None


def read_bytes(number: int, value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"field {number} must be length-delimited")
    return value
