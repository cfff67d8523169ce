"""The hand-written Range/Put codec agrees with betterproto and fails closed on garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelium.globaldb import GlobalDBError, KeyValue
from mycelium.globaldb._pb import etcdserverpb as pb
from mycelium.globaldb._pb import mvccpb
from mycelium.globaldb._wire import decode_put, decode_range, encode_put, encode_range

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
blobs = st.binary(max_size=64)
kvs = st.builds(mvccpb.KeyValue, key=blobs, create_revision=int64, mod_revision=int64, version=int64,
                value=blobs, lease=int64)  # fmt: skip


def as_model(kv: mvccpb.KeyValue) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@given(items=st.lists(kvs, max_size=5), more=st.booleans(), count=int64, revision=int64)
def test_range_response_decodes_like_betterproto(
    items: list[mvccpb.KeyValue], more: bool, count: int, revision: int
) -> None:
    msg = pb.RangeResponse(
        header=pb.ResponseHeader(revision=revision, member_id=7), kvs=items, more=more, count=count
    )
    result = decode_range(bytes(msg))
    assert (result.revision, result.count, result.more) == (revision, count, more)
    assert list(result.kvs) == [as_model(kv) for kv in items]


@given(prev=kvs, revision=int64)
def test_put_response_decodes_like_betterproto(prev: mvccpb.KeyValue, revision: int) -> None:
    rev, got = decode_put(bytes(pb.PutResponse(header=pb.ResponseHeader(revision=revision), prev_kv=prev)))
    assert rev == revision
    assert got == (as_model(prev) if prev.key else None)


@given(key=blobs, end=blobs, limit=int64, revision=int64, keys_only=st.booleans(), count_only=st.booleans())
def test_range_request_encodes_like_betterproto(
    key: bytes, end: bytes, limit: int, revision: int, keys_only: bool, count_only: bool
) -> None:
    ours = encode_range(key, end, limit, revision, keys_only, count_only).data
    theirs = pb.RangeRequest(key=key, range_end=end, limit=limit, revision=revision, keys_only=keys_only,
                             count_only=count_only)  # fmt: skip
    assert pb.RangeRequest().parse(ours) == theirs


@given(key=blobs, value=blobs, lease=int64, prev_kv=st.booleans())
def test_put_request_encodes_like_betterproto(key: bytes, value: bytes, lease: int, prev_kv: bool) -> None:
    ours = encode_put(key, value, lease, prev_kv).data
    assert pb.PutRequest().parse(ours) == pb.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv)


@given(data=st.binary(max_size=256))
def test_arbitrary_bytes_decode_or_raise_globaldb_error(data: bytes) -> None:
    for decode in (decode_range, decode_put):
        with contextlib.suppress(GlobalDBError):
            decode(data)


def test_truncated_length_is_refused() -> None:
    good = bytes(pb.RangeResponse(kvs=[mvccpb.KeyValue(key=b"k", value=b"v" * 10)]))
    with pytest.raises(GlobalDBError, match="past the message"):
        decode_range(good[:-3])
