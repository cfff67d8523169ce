"""Replication wire format between a volume front end and storage nodes (sans-I/O codec).

Bodies travel as frames: over meshnet as its authenticated frames, over plain TCP as a
little-endian u32 length followed by the body. Requests: ``op:u8 id:u32`` then
op-specific fields; responses: ``id:u32 status:u8`` then payload (an error message when status
is 1). Every decoder checks lengths before slicing and raises :class:`WireError` on anything
malformed, so a hostile or broken peer costs a closed connection, never a crash.

Plain structs rather than protobuf: the payload is raw block data, and a fixed layout keeps the
hot path free of per-field encoding work.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs

from ._errors import WireError

__all__ = [
    "Op",
    "Request",
    "Response",
    "FrameDecoder",
    "encode_request",
    "encode_response",
    "frame",
    "decode_request",
    "decode_response",
    "MAX_FRAME",
    "MAX_READS",
    "MAX_READ_BYTES",
    "MAX_WRITES",
    "READ_ENTRY",
    "WRITE_ENTRY",
    "WriteEntry",
    "decode_reads",
    "decode_writes",
]

MAX_FRAME: Final = (64 << 20) + (64 << 20) // 512 * 40 + 4096
_LEN = struct.Struct("<I")
_REQ = struct.Struct("<BI")
_RESP = struct.Struct("<IB")


class Op(enum.IntEnum):
    OPEN = 1  # size:u64 block_size:u32 chunk_size:u32 name
    WRITE = 2  # first:u64 chunk:u32 generation:u64 count:u32 data records
    ZERO = 3  # first:u64 chunk:u32 generation:u64 count:u32
    READ = 4  # first:u64 count:u32 -> data records
    FLUSH = 5
    STATES = 6  # -> (generation:u64 digest:16)*
    READ_CHUNK = 7  # chunk:u32 -> generation:u64 data records
    WRITE_CHUNK = 8  # chunk:u32 generation:u64 data records
    PING = 9
    WRITES = 10  # entries:u32 (first:u64 chunk:u32 generation:u64 count:u32)* (data records)*
    READS = 11  # entries:u32 (first:u64 count:u32)* -> (data records)* in entry order


_FIELDS: Final = {
    Op.OPEN: struct.Struct("<QII"),
    Op.WRITE: struct.Struct("<QIQI"),
    Op.ZERO: struct.Struct("<QIQI"),
    Op.READ: struct.Struct("<QI"),
    Op.FLUSH: struct.Struct("<"),
    Op.STATES: struct.Struct("<"),
    Op.READ_CHUNK: struct.Struct("<I"),
    Op.WRITE_CHUNK: struct.Struct("<IQ"),
    Op.PING: struct.Struct("<"),
    Op.WRITES: struct.Struct("<I"),
    Op.READS: struct.Struct("<I"),
}

# One entry of a WRITES request: first block, chunk, generation, block count.
WRITE_ENTRY: Final = struct.Struct("<QIQI")
# Entries per WRITES request: what a front end coalesces between two sends of one replica.
MAX_WRITES: Final = 4096
# One entry of a READS request: first block, block count; at most MAX_READS entries and
# MAX_READ_BYTES of data per request, so every reply fits in a frame.
READ_ENTRY: Final = struct.Struct("<QI")
MAX_READS: Final = 4096
MAX_READ_BYTES: Final = 32 << 20


_OPS: Final = {o.value: o for o in Op}  # a dict lookup costs far less than Op(raw)


@attrs.frozen
class Request:
    op: Op
    request_id: int
    fields: tuple[int, ...]
    payload: bytes | memoryview  # a view into the body: block data is not copied again


@attrs.frozen
class Response:
    request_id: int
    ok: bool
    payload: bytes | memoryview  # a view into the body: a reply split among reads copies once


def encode_request(op: Op, request_id: int, fields: tuple[int, ...] = (), *payload: bytes) -> bytes:
    """One request body (the transport frames it)."""
    return b"".join((_REQ.pack(op, request_id), _FIELDS[op].pack(*fields), *payload))


def encode_response(request_id: int, ok: bool, *payload: bytes) -> bytes:
    """One response body (the transport frames it)."""
    return b"".join((_RESP.pack(request_id, 0 if ok else 1), *payload))


def frame(body: bytes) -> bytes:
    """Length-prefix a body for the plain-TCP transport."""
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes; yields whole frame bodies, refusing lengths over ``max_frame``.

    A received chunk is read in place while nothing else is buffered (the common case: a peer's
    batch arrives whole): its bodies are views into it, not copies; only a frame split across
    chunks goes through the buffer (and comes out as one copy).
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._chunk = b""  # the chunk read in place; _buf is empty while it has unread bytes
        self._pos = 0
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._pos < len(self._chunk):  # unread bytes of the previous chunk go first
            self._buf += memoryview(self._chunk)[self._pos :]
            self._chunk, self._pos = b"", 0
        if self._buf:
            self._buf += data
        else:
            self._chunk, self._pos = data, 0

    def next_frame(self) -> bytes | memoryview | None:
        """The next whole body, or None. A body read in place is a view into the received chunk
        (no copy; it keeps the chunk alive while it is referenced)."""
        chunk, pos = self._chunk, self._pos
        if pos < len(chunk):
            if len(chunk) - pos >= 4:
                (length,) = _LEN.unpack_from(chunk, pos)
                if length > self._max:
                    raise WireError(f"frame length {length} exceeds the limit {self._max}")
                end = pos + 4 + length
                if end <= len(chunk):
                    self._pos = end
                    return memoryview(chunk)[pos + 4 : end]
            self._buf += memoryview(chunk)[pos:]  # a partial frame: wait for the rest in _buf
            self._chunk, self._pos = b"", 0
        if len(self._buf) < 4:
            return None
        (length,) = _LEN.unpack_from(self._buf)
        if length > self._max:
            raise WireError(f"frame length {length} exceeds the limit {self._max}")
        if len(self._buf) < 4 + length:
            return None
        with memoryview(self._buf) as view:  # one copy (a bytearray slice would be a second)
            body = bytes(view[4 : 4 + length])
        del self._buf[: 4 + length]
        return body


def decode_request(body: bytes | memoryview) -> Request:
    if len(body) < _REQ.size:
        raise WireError(f"request of {len(body)} bytes is shorter than its {_REQ.size}-byte header")
    raw_op, request_id = _REQ.unpack_from(body)
    op = _OPS.get(raw_op)
    if op is None:
        raise WireError(f"unknown op {raw_op}; valid ops are {[o.value for o in Op]}")
    fields = _FIELDS[op]
    if len(body) < _REQ.size + fields.size:
        raise WireError(f"{op.name} request truncated: {len(body)} bytes")
    return Request(
        op, request_id, fields.unpack_from(body, _REQ.size), memoryview(body)[_REQ.size + fields.size :]
    )


def decode_response(body: bytes | memoryview) -> Response:
    if len(body) < _RESP.size:
        raise WireError(f"response of {len(body)} bytes is shorter than its {_RESP.size}-byte header")
    request_id, status = _RESP.unpack_from(body)
    if status not in (0, 1):
        raise WireError(f"response status {status}: must be 0 or 1")
    return Response(request_id, status == 0, memoryview(body)[_RESP.size :])


# first block, chunk, generation, data, records (views into the request: no copy per entry)
WriteEntry = tuple[int, int, int, memoryview, memoryview]


def decode_writes(
    entries: int, payload: bytes | memoryview, block_size: int, record_size: int
) -> list[WriteEntry]:
    """The entries of a WRITES request, in order (their order is the order to apply them).

    Every length is checked against the payload before anything is sliced: a hostile count or
    block count costs a :class:`WireError`, never a large allocation. Data and records are
    views into ``payload`` (written to files as they are, never copied).
    """
    if not 0 < entries <= MAX_WRITES:
        raise WireError(f"WRITES with {entries} entries; must be 1..{MAX_WRITES}")
    heads = entries * WRITE_ENTRY.size
    if len(payload) < heads:
        raise WireError(f"WRITES payload of {len(payload)} bytes is shorter than its {entries} entry headers")
    unpack = WRITE_ENTRY.unpack_from
    parsed = [unpack(payload, i * WRITE_ENTRY.size) for i in range(entries)]
    per_block = block_size + record_size
    total = heads
    for _first, _chunk, _generation, count in parsed:
        if count == 0:
            raise WireError("WRITES entry with 0 blocks")
        total += count * per_block
    if total != len(payload):
        raise WireError(f"WRITES payload is {len(payload)} bytes; its entries describe {total}")
    out: list[WriteEntry] = []
    at = heads
    view = memoryview(payload)
    for first, chunk, generation, count in parsed:
        data_end = at + count * block_size
        records_end = data_end + count * record_size
        out.append((first, chunk, generation, view[at:data_end], view[data_end:records_end]))
        at = records_end
    return out


def decode_reads(entries: int, payload: bytes | memoryview, block_size: int) -> list[tuple[int, int]]:
    """The ``(first block, count)`` entries of a READS request, lengths checked before use."""
    if not 0 < entries <= MAX_READS:
        raise WireError(f"READS with {entries} entries; must be 1..{MAX_READS}")
    if len(payload) != entries * READ_ENTRY.size:
        raise WireError(
            f"READS payload of {len(payload)} bytes; {entries} entries take {entries * READ_ENTRY.size}"
        )
    unpack = READ_ENTRY.unpack_from
    out = [unpack(payload, i * READ_ENTRY.size) for i in range(entries)]
    total = 0
    for _first, count in out:
        if count == 0:
            raise WireError("READS entry with 0 blocks")
        total += count
    if total * block_size > MAX_READ_BYTES:
        raise WireError(f"READS of {total} blocks exceeds {MAX_READ_BYTES} bytes per request")
    return out
