"""Placement, volume spec validation, the replication wire codec, the CLI's error handling."""

from __future__ import annotations

import contextlib
import itertools
import struct
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blockstore
from blockstore import StorageNodeInfo, VolumeSpec, WritePolicy, place_chunk
from blockstore._records import RECORD_SIZE
from blockstore._wire import (
    MAX_READ_BYTES,
    MAX_READS,
    MAX_WRITES,
    READ_ENTRY,
    WRITE_ENTRY,
    FrameDecoder,
    Op,
    decode_reads,
    decode_request,
    decode_response,
    decode_writes,
    encode_request,
    frame,
)

NODES = [StorageNodeInfo(f"node{i}", failure_domain=f"rack{i % 3}") for i in range(9)]


def test_placement_is_deterministic_and_distinct() -> None:
    for chunk in range(50):
        first = place_chunk("vol", chunk, NODES, 3)
        assert first == place_chunk("vol", chunk, list(reversed(NODES)), 3)
        assert len(set(first)) == 3


def test_placement_spreads_replicas_over_failure_domains() -> None:
    domains = {n.node_id: n.failure_domain for n in NODES}
    for chunk in range(200):
        assert len({domains[n] for n in place_chunk("vol", chunk, NODES, 3)}) == 3


def test_placement_balances_load_and_moves_little_when_a_node_joins() -> None:
    counts = Counter(n for c in range(3000) for n in place_chunk("v", c, NODES, 3))
    assert max(counts.values()) < 1.3 * min(counts.values())
    grown = [*NODES, StorageNodeInfo("node9", failure_domain="rack0")]
    moved = sum(set(place_chunk("v", c, NODES, 3)) != set(place_chunk("v", c, grown, 3)) for c in range(3000))
    assert moved < 0.45 * 3000  # only chunks that now rank the new node in their top 3


def test_placement_needs_enough_nodes() -> None:
    with pytest.raises(blockstore.ConfigError, match="replicas=4"):
        place_chunk("v", 0, NODES[:3], 4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 1000}, "size=1000"),
        ({"block_size": 3000}, "block_size=3000"),
        ({"chunk_size": 1 << 30}, "chunk_size"),
        ({"replicas": 0}, "replicas=0"),
        ({"name": "../etc"}, "name="),
        ({"policy": WritePolicy(min_replicas=4)}, "min_replicas=4"),
    ],
)
def test_bad_spec_names_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "v", "size": 1 << 20}
    args.update(kwargs)
    with pytest.raises(blockstore.ConfigError, match=field.replace(".", r"\.")):
        VolumeSpec(**args)  # type: ignore[arg-type]


def test_default_policy_follows_replica_count() -> None:
    assert VolumeSpec(name="v", size=4096).policy == WritePolicy(ack="all", min_replicas=2)
    assert VolumeSpec(name="v", size=4096, replicas=1).policy.min_replicas == 1


def test_write_round_rules() -> None:
    all_round = blockstore.WriteRound(["a", "b", "c"], WritePolicy(ack="all", min_replicas=2))
    assert all_round.ack("a") is blockstore.RoundOutcome.PENDING
    assert all_round.fail("b") is blockstore.RoundOutcome.PENDING
    assert all_round.ack("c") is blockstore.RoundOutcome.ACKED
    quorum = blockstore.WriteRound(["a", "b", "c"], WritePolicy(ack="quorum", min_replicas=2))
    quorum.ack("a")
    assert quorum.ack("b") is blockstore.RoundOutcome.ACKED
    failing = blockstore.WriteRound(["a", "b", "c"], WritePolicy(ack="all", min_replicas=2))
    failing.fail("a")
    assert failing.fail("b") is blockstore.RoundOutcome.FAILED


def test_wire_round_trip() -> None:
    body = encode_request(Op.WRITE, 9, (1, 2, 3, 1), b"d" * 4096, b"r" * 40)
    req = decode_request(body)
    assert (req.op, req.request_id, req.fields, len(req.payload)) == (Op.WRITE, 9, (1, 2, 3, 1), 4136)
    dec = FrameDecoder()
    dec.feed(frame(body)[:10])
    assert dec.next_frame() is None
    dec.feed(frame(body)[10:])
    assert dec.next_frame() == body


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    st.lists(st.booleans(), max_size=8),
)
def test_frame_decoder_yields_the_frames_whatever_the_chunking(
    bodies: list[bytes], cuts: list[int], drain: list[bool]
) -> None:
    """Frames read in place from a chunk and frames split across chunks come out the same."""
    stream = b"".join(frame(b) for b in bodies)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    dec = FrameDecoder()
    got: list[bytes] = []
    for i, (start, end) in enumerate(itertools.pairwise(points)):
        dec.feed(stream[start:end])
        if i < len(drain) and not drain[i]:
            continue  # sometimes feed again before reading: chunk and buffer must stay in order
        while (body := dec.next_frame()) is not None:
            got.append(body)
    while (body := dec.next_frame()) is not None:
        got.append(body)
    assert got == bodies


def test_frame_decoder_refuses_an_oversized_frame_inside_a_chunk() -> None:
    dec = FrameDecoder(max_frame=1024)
    dec.feed(frame(b"ok") + struct.pack("<I", 1 << 30) + b"x" * 10)
    assert dec.next_frame() == b"ok"
    with pytest.raises(blockstore.WireError, match="exceeds the limit"):
        dec.next_frame()


def test_wire_refuses_oversized_frames_before_buffering() -> None:
    dec = FrameDecoder(max_frame=1024)
    dec.feed(struct.pack("<I", 1 << 30))
    with pytest.raises(blockstore.WireError, match="exceeds the limit"):
        dec.next_frame()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_wire_decoders_raise_only_wire_errors(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(blockstore.WireError):
            decode(data)


def test_writes_request_round_trip_keeps_entry_order() -> None:
    entries = [(7, 0, 3, b"a" * 512, b"A" * RECORD_SIZE), (7, 0, 4, b"b" * 1024, b"B" * 2 * RECORD_SIZE)]
    heads = [WRITE_ENTRY.pack(first, chunk, gen, len(data) // 512) for first, chunk, gen, data, _ in entries]
    blobs = [part for *_, data, records in entries for part in (data, records)]
    req = decode_request(encode_request(Op.WRITES, 5, (2,), *heads, *blobs))
    assert (req.op, req.fields) == (Op.WRITES, (2,))
    assert decode_writes(req.fields[0], req.payload, 512, RECORD_SIZE) == entries


@pytest.mark.parametrize(
    ("entries", "payload", "message"),
    [
        (0, b"", "must be 1.."),
        (MAX_WRITES + 1, b"", "must be 1.."),
        (2**32 - 1, b"", "must be 1.."),
        (1, bytes(10), "shorter than its 1 entry headers"),
        (1, WRITE_ENTRY.pack(0, 0, 0, 0), "0 blocks"),
        (1, WRITE_ENTRY.pack(0, 0, 0, 2**32 - 1) + bytes(552), "entries describe"),
    ],
)
def test_writes_decoder_refuses_lengths_before_slicing(entries: int, payload: bytes, message: str) -> None:
    with pytest.raises(blockstore.WireError, match=message):
        decode_writes(entries, payload, 512, RECORD_SIZE)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)), max_size=4),
    st.binary(max_size=2048),
)
def test_writes_decoder_raises_only_wire_errors(
    entries: int, heads: list[tuple[int, int]], tail: bytes
) -> None:
    payload = b"".join(WRITE_ENTRY.pack(first, 0, 1, count) for first, count in heads) + tail
    with contextlib.suppress(blockstore.WireError):
        for _first, _chunk, _gen, data, records in decode_writes(entries, payload, 512, RECORD_SIZE):
            assert len(data) % 512 == 0
            assert len(records) == len(data) // 512 * RECORD_SIZE


def test_reads_request_round_trip() -> None:
    entries = [(9, 1), (0, 32), (9, 1)]
    body = encode_request(Op.READS, 3, (3,), *(READ_ENTRY.pack(*e) for e in entries))
    req = decode_request(body)
    assert decode_reads(req.fields[0], req.payload, 4096) == entries


@pytest.mark.parametrize(
    ("entries", "payload", "message"),
    [
        (0, b"", "must be 1.."),
        (MAX_READS + 1, b"", "must be 1.."),
        (2, READ_ENTRY.pack(0, 1), "2 entries take"),
        (1, READ_ENTRY.pack(0, 0), "0 blocks"),
        (1, READ_ENTRY.pack(0, MAX_READ_BYTES // 4096 + 1), "exceeds"),
        (2, READ_ENTRY.pack(0, 2**32 - 1) * 2, "exceeds"),
    ],
)
def test_reads_decoder_refuses_bad_counts(entries: int, payload: bytes, message: str) -> None:
    with pytest.raises(blockstore.WireError, match=message):
        decode_reads(entries, payload, 4096)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=256))
def test_reads_decoder_raises_only_wire_errors(entries: int, payload: bytes) -> None:
    with contextlib.suppress(blockstore.WireError):
        decoded = decode_reads(entries, payload, 4096)
        assert sum(count for _first, count in decoded) * 4096 <= MAX_READ_BYTES


def test_cli_bad_argument_is_one_line_not_a_traceback() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "blockstore",
            "serve",
            "--size",
            "1M",
            "--local",
            "/tmp/x",
            "--chunk-size",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "chunk_size=3: must be a power of two" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_write_targets_follow_every_health_change() -> None:
    """write_targets is cached per placement: every mark_* must invalidate it."""
    from blockstore._replication import ReplicaSetState

    state = ReplicaSetState(["a", "b", "c"], WritePolicy(min_replicas=2))
    placement = ("a", "b", "c")
    assert state.write_targets(placement) == ("a", "b", "c")
    state.mark_down("b")
    assert state.write_targets(placement) == ("a", "c")
    state.mark_rebuilding("b")
    assert state.write_targets(placement) == ("a", "b", "c")
    state.mark_down("a")
    state.mark_down("c")
    with pytest.raises(blockstore.InsufficientReplicasError, match="min_replicas=2"):
        state.write_targets(placement)
    state.mark_healthy("a")
    assert state.write_targets(placement) == ("a", "b")


def test_read_candidates_follow_health_and_latency() -> None:
    """healthy() is cached per placement; nearest() is the first of read_candidates()."""
    from blockstore._replication import ReplicaSetState

    state = ReplicaSetState(["a", "b", "c"], WritePolicy(min_replicas=2))
    placement = ("a", "b", "c")
    assert state.nearest(placement) == "a"  # no latency seen yet: placement order
    state.observe("a", 0.003)
    state.observe("b", 0.001)
    state.observe("c", 0.002)
    assert state.read_candidates(placement) == ["b", "c", "a"]
    assert state.nearest(placement) == "b"
    state.mark_down("b")
    assert state.healthy(placement) == ("a", "c")
    assert state.nearest(placement) == "c"
    assert state.read_candidates(placement, exclude=["c"]) == ["a"]
    state.mark_rebuilding("b")  # rebuilding replicas take writes but serve no reads
    assert state.nearest(placement) == "c"
    state.mark_healthy("b")
    assert state.nearest(placement) == "b"
    for node in placement:
        state.mark_down(node)
    assert state.nearest(placement) is None
    assert state.read_candidates(placement) == []
