"""The gossip datagram codec: round trips, the same bytes as betterproto, bounds, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spore
from spore._pb.spore import v1 as pb

_RECORDS = [
    spore.build_record(
        spore.Ed25519Signer.from_seed(f"w{i}".encode()),
        network_id="net",
        role=spore.Role.RHIZOMORPH,
        addresses=[f"10.0.0.{i}:7000"],
        incarnation=i,
        expires_at=1e6,
    )
    for i in range(4)
]
_ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_u32 = st.integers(0, 2**32 - 1)


@st.composite
def updates(draw: st.DrawFn) -> spore.Update:
    state = draw(st.sampled_from(list(spore.MemberState)))
    if state is spore.MemberState.ALIVE or draw(st.booleans()):
        r = draw(st.sampled_from(_RECORDS))
        return spore.Update(state, r.node_id, r.incarnation, r, draw(_ids))
    return spore.Update(state, draw(_ids), draw(st.integers(0, 2**64 - 1)), None, draw(_ids))


bodies = st.one_of(
    st.none(),
    st.builds(spore.Ping, _u32, _ids, _ids),
    st.builds(spore.Ack, _u32),
    st.builds(spore.Nack, _u32),
    st.builds(spore.PingReq, _u32, _ids),
    st.builds(spore.PushPull, st.booleans(), st.booleans(), st.lists(updates(), max_size=5).map(tuple)),
)
envelopes = st.builds(spore.Envelope, _ids, _ids, bodies, st.lists(updates(), max_size=5).map(tuple))


@settings(max_examples=150, deadline=None)
@given(env=envelopes)
def test_envelope_round_trips(env: spore.Envelope) -> None:
    assert spore.decode_envelope(spore.encode_envelope(env)) == env


@settings(max_examples=150, deadline=None)
@given(env=envelopes)
def test_our_bytes_are_the_wire_format_betterproto_reads_and_writes(env: spore.Envelope) -> None:
    ours = spore.encode_envelope(env)
    theirs = pb.Envelope().parse(ours)
    assert theirs.network_id == env.network_id
    assert theirs.sender == env.sender
    assert [u.node_id for u in theirs.updates] == [u.node_id for u in env.updates]
    # ...and what betterproto writes from that, we read back to the same value.
    assert spore.decode_envelope(bytes(theirs)) == env


def test_a_message_over_the_size_bound_is_refused_before_parsing() -> None:
    limits = spore.MessageLimits(max_message_bytes=2048)
    with pytest.raises(spore.DecodeError, match="at most 2048") as info:
        spore.decode_envelope(b"\x0a\x01a" * 1000, limits)
    assert info.value.reason == "oversized"


def test_too_many_updates_are_refused_while_parsing() -> None:
    u = spore.Update(spore.MemberState.DEAD, "x", 1, None, "y")
    env = spore.Envelope("net", "s", None, (u,) * 5)
    with pytest.raises(spore.DecodeError, match="updates exceeds 4") as info:
        spore.decode_envelope(spore.encode_envelope(env), spore.MessageLimits(max_updates=4))
    assert info.value.reason == "oversized"


@pytest.mark.parametrize(
    "data",
    [
        b"\x1a\x05\x08",  # length beyond the end
        b"\x08" + b"\xff" * 11,  # varint longer than 10 bytes
        b"\x0b",  # group start (wire type 3)
        b"\x00\x00",  # field number 0
        b"\x0a\x02\xff\xfe",  # invalid UTF-8 in network_id
        b"\x42\x02\x08\x09",  # update with an unknown state
        b"\x42\x02\x08\x01",  # ALIVE update without a record
        b"\x1a\x06\x08\x80\x80\x80\x80\x10",  # seq beyond uint32
    ],
)
def test_malformed_datagrams_raise_decode_error(data: bytes) -> None:
    with pytest.raises(spore.DecodeError):
        spore.decode_envelope(data)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400))
def test_envelope_decoder_raises_only_decode_error_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(spore.DecodeError):
        spore.decode_envelope(data)


@settings(max_examples=200, deadline=None)
@given(env=envelopes, pos=st.integers(0, 100_000), byte=st.integers(0, 255))
def test_envelope_decoder_survives_corrupted_valid_messages(env: spore.Envelope, pos: int, byte: int) -> None:
    data = bytearray(spore.encode_envelope(env))
    if not data:
        return
    data[pos % len(data)] = byte
    with contextlib.suppress(spore.DecodeError):
        spore.decode_envelope(bytes(data))
