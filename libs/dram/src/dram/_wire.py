"""Encoding and bounded decoding of replication frames.

Frame = u32le header length | ``Envelope`` (protobuf) | raw payload. The payload carries page
contents (PageBatch, SeedChunk) so the protobuf parser never copies page data. Arrays of page
indices and tags are little-endian uint64 arrays ("u64le") in bytes fields.

Every decoder of network input checks lengths before parsing and re-checks the parsed fields
(page indices inside the region, payload = pages x page size, matching array lengths). Any
violation - including betterproto's own parse errors - raises :class:`DramDecodeError` only.
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Sequence

import attrs
import betterproto

from ._errors import DramDecodeError
from ._pb.dram.v1 import (
    Ack,
    Envelope,
    Heartbeat,
    HeartbeatAck,
    Join,
    PageBatch,
    SeedChunk,
    SeedRequest,
    Status,
)

__all__ = [
    "Message",
    "Frame",
    "WireLimits",
    "encode",
    "decode",
    "pack_u64",
    "unpack_u64",
    "make_tag",
    "tag_epoch",
    "TAG_SEQ_BITS",
]

Message = PageBatch | Ack | Heartbeat | HeartbeatAck | Status | Join | SeedRequest | SeedChunk
_FIELD = {
    PageBatch: "batch",
    Ack: "ack",
    Heartbeat: "heartbeat",
    HeartbeatAck: "heartbeat_ack",
    Status: "status",
    Join: "join",
    SeedRequest: "seed_request",
    SeedChunk: "seed_chunk",
}
_HEADER = struct.Struct("<I")
TAG_SEQ_BITS = 40


def make_tag(epoch: int, seq: int) -> int:
    """Page version tag: a later epoch (promotion) orders after every seq of earlier epochs."""
    return (epoch << TAG_SEQ_BITS) | seq


def tag_epoch(tag: int) -> int:
    return tag >> TAG_SEQ_BITS


def pack_u64(values: Sequence[int] | array.array[int]) -> bytes:
    arr = values if isinstance(values, array.array) else array.array("Q", values)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        arr = array.array("Q", arr)
        arr.byteswap()
    return arr.tobytes()


def unpack_u64(raw: bytes, what: str) -> array.array[int]:
    if len(raw) % 8:
        raise DramDecodeError(f"{what}: {len(raw)} bytes is not a whole number of uint64 values")
    arr = array.array("Q")
    arr.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover
        arr.byteswap()
    return arr


@attrs.frozen
class WireLimits:
    """Bounds applied before and after parsing."""

    region_pages: int
    page_size: int = 4096
    max_pages_per_frame: int = 1024
    max_backups: int = 64

    @property
    def max_header(self) -> int:
        # the largest legal header: a Join carries one 8-byte tag per page
        return max(self.max_pages_per_frame * 16, self.region_pages * 8) + 4096

    @property
    def max_frame(self) -> int:
        return _HEADER.size + self.max_header + self.max_pages_per_frame * self.page_size


@attrs.frozen
class Frame:
    message: Message
    payload: memoryview


def encode(message: Message, payload: bytes | memoryview = b"") -> bytes:
    env = Envelope()
    setattr(env, _FIELD[type(message)], message)
    header = bytes(env)
    return b"".join((_HEADER.pack(len(header)), header, payload))


def decode(frame: bytes | memoryview, limits: WireLimits) -> Frame:
    """Parse and validate one frame; raises only :class:`DramDecodeError`."""
    if len(frame) > limits.max_frame:
        raise DramDecodeError(f"frame of {len(frame)} bytes exceeds the limit {limits.max_frame}")
    if len(frame) < _HEADER.size:
        raise DramDecodeError(f"frame of {len(frame)} bytes is shorter than its 4-byte header length")
    view = memoryview(frame)
    (hlen,) = _HEADER.unpack_from(view)
    if hlen > limits.max_header or _HEADER.size + hlen > len(view):
        raise DramDecodeError(f"header length {hlen} exceeds the frame or the limit {limits.max_header}")
    try:
        env = Envelope().parse(bytes(view[_HEADER.size : _HEADER.size + hlen]))
        name, inner = betterproto.which_one_of(env, "body")
    except Exception as e:  # betterproto raises assorted errors on garbage
        raise DramDecodeError(f"malformed frame header: {type(e).__name__}") from None
    if not name or inner is None:
        raise DramDecodeError("frame carries no message")
    msg: Message = inner
    payload = view[_HEADER.size + hlen :]
    _check_types(msg)
    _validate(msg, payload, limits)
    return Frame(msg, payload)


def _check_types(msg: Message) -> None:
    """A field sent with the wrong wire type parses into the wrong Python type: refuse it."""
    fresh = type(msg)()
    for name in msg.__dataclass_fields__:
        got, want = getattr(msg, name), getattr(fresh, name)
        if type(got) is not type(want):
            raise DramDecodeError(f"{type(msg).__name__}.{name} has the wrong type ({type(got).__name__})")
        if isinstance(got, list) and not all(isinstance(x, str) for x in got):
            raise DramDecodeError(f"{type(msg).__name__}.{name} must hold strings")


def _check_pages(pages: array.array[int], limits: WireLimits, what: str) -> None:
    if len(pages) > limits.max_pages_per_frame:
        raise DramDecodeError(
            f"{what}: {len(pages)} pages exceeds max_pages_per_frame={limits.max_pages_per_frame}"
        )
    if pages and max(pages) >= limits.region_pages:
        raise DramDecodeError(f"{what}: page {max(pages)} outside the region (0..{limits.region_pages - 1})")


def _validate(msg: Message, payload: memoryview, limits: WireLimits) -> None:
    expected_payload = 0
    if isinstance(msg, PageBatch):
        pages = unpack_u64(msg.pages, "PageBatch.pages")
        _check_pages(pages, limits, "PageBatch.pages")
        if len(msg.tags) != len(msg.pages):
            raise DramDecodeError(f"PageBatch: {len(msg.tags) // 8} tags for {len(pages)} pages")
        expected_payload = len(pages) * limits.page_size
    elif isinstance(msg, SeedChunk):
        n = len(unpack_u64(msg.tags, "SeedChunk.tags"))
        if n > limits.max_pages_per_frame or msg.first_page + n > limits.region_pages:
            raise DramDecodeError(
                f"SeedChunk({msg.first_page}, {n} pages) reaches past the region or frame limit"
            )
        expected_payload = n * limits.page_size
    elif isinstance(msg, SeedRequest):
        if (
            not (0 < msg.count <= limits.max_pages_per_frame)
            or msg.first_page + msg.count > limits.region_pages
        ):
            raise DramDecodeError(
                f"SeedRequest({msg.first_page}, {msg.count}) must ask 1..{limits.max_pages_per_frame} "
                "pages inside the region"
            )
    elif isinstance(msg, Join):
        if len(msg.tags) != limits.region_pages * 8:
            raise DramDecodeError(
                f"Join carries {len(msg.tags) // 8} tags, the region has {limits.region_pages} pages"
            )
    elif isinstance(msg, Heartbeat) and len(msg.backups) > limits.max_backups:
        raise DramDecodeError(f"Heartbeat lists {len(msg.backups)} backups, max {limits.max_backups}")
    if len(payload) != expected_payload:
        raise DramDecodeError(
            f"{type(msg).__name__} payload is {len(payload)} bytes, expected {expected_payload}"
        )
