"""Frame codec: round trips, and hostile input only ever raises DramDecodeError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dram import DramDecodeError, WireLimits, decode, encode
from dram._pb.dram.v1 import Ack, Join, PageBatch, SeedRequest
from dram._wire import pack_u64

LIMITS = WireLimits(region_pages=32, page_size=64, max_pages_per_frame=8)


def test_page_batch_round_trips_with_raw_payload() -> None:
    msg = PageBatch(batch_id=7, pages=pack_u64([1, 5]), tags=pack_u64([10, 11]), watermark=3, sent_at=1.5)
    frame = decode(encode(msg, b"a" * 64 + b"b" * 64), LIMITS)
    assert isinstance(frame.message, PageBatch)
    assert frame.message.batch_id == 7
    assert bytes(frame.payload) == b"a" * 64 + b"b" * 64


@pytest.mark.parametrize(
    ("msg", "payload", "match"),
    [
        (PageBatch(pages=pack_u64([32]), tags=pack_u64([1])), b"x" * 64, "outside the region"),
        (PageBatch(pages=pack_u64([1]), tags=pack_u64([1, 2])), b"x" * 64, "tags"),
        (PageBatch(pages=pack_u64([1]), tags=pack_u64([1])), b"x" * 63, "payload"),
        (PageBatch(pages=pack_u64(range(9)), tags=pack_u64(range(9))), b"x" * 64 * 9, "exceeds|max_pages"),
        (Join(tags=pack_u64([0] * 31)), b"", "region has 32"),
        (SeedRequest(first_page=30, count=5), b"", "inside the region"),
        (Ack(batch_id=1), b"extra", "payload"),
    ],
)
def test_invalid_frames_are_refused_with_a_reason(msg: object, payload: bytes, match: str) -> None:
    with pytest.raises(DramDecodeError, match=match):
        decode(encode(msg, payload), LIMITS)  # type: ignore[arg-type]


def test_oversized_frame_is_refused_before_parsing() -> None:
    with pytest.raises(DramDecodeError, match="exceeds the limit"):
        decode(b"\x00" * (LIMITS.max_frame + 1), LIMITS)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    with contextlib.suppress(DramDecodeError):
        decode(data, LIMITS)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 200), st.integers(0, 255))
def test_mutated_valid_frames_never_raise_anything_but_decode_error(junk: bytes, pos: int, byte: int) -> None:
    frame = bytearray(encode(PageBatch(pages=pack_u64([1]), tags=pack_u64([2])), b"p" * 64))
    frame[pos % len(frame)] = byte
    with contextlib.suppress(DramDecodeError):
        decode(bytes(frame) + junk[: pos % 3], LIMITS)
