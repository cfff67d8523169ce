"""Every decoder of network input is bounded and raises only DecodeError (or VerificationError
for verdicts); every core's receive() survives arbitrary bytes."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._client import read_replies
from bftconsensus._crypto import signing_payload
from bftconsensus._wire import _BODY, Kind, open_signed, replies_frames, seal

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=512))
def test_random_frames_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        env = b.decode_frame(data)
    except b.DecodeError:
        return
    assert isinstance(env, pb.Signed)


@FUZZ
@given(st.sampled_from(list(Kind)), st.binary(max_size=512))
def test_signed_garbage_bodies_raise_only_decode_error(world, keys, kind: Kind, body: bytes) -> None:
    sig = world["e0"].sign(signing_payload(int(kind), "e0", body))
    env = pb.Signed(kind=int(kind), body=body, signer="e0", signature=sig)
    try:
        msg = open_signed(keys, env, _BODY[kind])
    except b.DecodeError:
        return
    assert isinstance(msg, _BODY[kind])


@FUZZ
@given(st.binary(max_size=400))
def test_cores_drop_arbitrary_input(world, keys, functions, data: bytes) -> None:
    replica = b.Replica(world["e0"], keys, b.ReplicaConfig(("e0", "e1", "e2", "e3")), b.KeyValueStore())
    assert isinstance(replica.receive("e1", data), list)
    assert isinstance(b.Executor(world["e1"], keys, functions).receive("coord", data), list)
    client = b.Client(world["client"], keys, ["e0", "e1", "e2", "e3"])
    client.submit(b"get x")
    assert client.receive("e0", data) == []
    op = b.sign_operation(world["client"], "op", "sha256", b"")
    run = b.QuorumRun(world["coord"], keys, op, [("e0", 1), ("e1", 1), ("e2", 1)], b"beacon")
    run.start(0.0)
    assert run.receive("e0", data, 0.1) == []


@FUZZ
@given(st.binary(max_size=400))
def test_a_client_connection_reads_any_bytes_as_replies_or_nothing(data: bytes) -> None:
    parsed = read_replies(data)  # what ClusterClient runs on every frame of a replica's stream
    if parsed is not None:
        env, replies = parsed
        assert env.kind in (int(Kind.REPLY), int(Kind.REPLIES))
        assert all(isinstance(r, pb.Reply) for r in replies)


def test_read_replies_count_at_their_client_as_the_frame_would(world, keys) -> None:
    client = b.Client(world["client"], keys, ["e0", "e1", "e2", "e3"])
    client.submit(b"get x")
    for src in ("e0", "e1"):
        reply = pb.Reply(view=0, timestamp=1, client=world["client"].node_id, replica=src, result=b"v")
        frame = bytes(pb.Signed(kind=int(Kind.REPLY), body=bytes(reply), signer=src))
        parsed = read_replies(frame)
        assert parsed is not None
        env, (one,) = parsed
        client.take_reply("e2", env, one)  # arrived on another replica's link: not counted
        assert client.busy
        client.take_reply(src, env, one)
    assert not client.busy
    assert client.result == b"v"
    request = seal(world["client"], Kind.CLIENT_REQUEST, pb.ClientRequest(world["client"].node_id, 1, b""))
    assert read_replies(bytes(request)) is None  # not a reply


def test_a_replies_frame_carries_each_clients_reply_to_it(world, keys) -> None:
    """One frame per replica for the clients of a link: each client counts its own reply."""
    clients = [b.Client(world[name], keys, ["e0", "e1", "e2", "e3"]) for name in ("client", "client2")]
    for c in clients:
        c.submit(b"get x")
    for src in ("e0", "e1"):
        encoded = [
            bytes(pb.Reply(view=0, timestamp=1, client=c.signer.node_id, replica=src, result=b"v"))
            for c in clients
        ]
        (frame,) = replies_frames(src, encoded)
        for c in clients:
            c.receive("e2" if src == "e0" else src, frame)  # e0's bundle came on e2's link
    assert [c.busy for c in clients] == [True, True]  # one genuine bundle each so far
    for c in clients:
        c.receive("e0", replies_frames("e0", [bytes(pb.Reply(0, 1, c.signer.node_id, "e0", b"v"))])[0])
    assert [c.result for c in clients] == [b"v", b"v"]


def test_replies_frames_stay_within_the_limits() -> None:
    limits = b.WireLimits(max_frame_bytes=2048, max_repeated=3)
    encoded = [
        bytes(pb.Reply(view=0, timestamp=i, client="c", replica="e0", result=b"r" * 300)) for i in range(8)
    ]
    frames = replies_frames("e0", encoded, limits)
    assert [len(read_replies(f, limits)[1]) for f in frames] == [3, 3, 2]  # type: ignore[index]
    big = replies_frames("e0", encoded, b.WireLimits(max_frame_bytes=1024))
    assert all(len(f) <= 1024 for f in big)
    got = [r.timestamp for f in big for r in read_replies(f)[1]]  # type: ignore[index]
    assert got == list(range(8))  # every reply, in order


@FUZZ
@given(st.binary(max_size=400))
def test_random_verdicts_raise_only_verification_error(keys, data: bytes) -> None:
    with pytest.raises(b.VerificationError):
        b.verify_verdict(data, keys)


def test_oversized_frame_is_refused_before_parsing() -> None:
    limits = b.WireLimits(max_frame_bytes=1024)
    with pytest.raises(b.DecodeError, match="at most 1024"):
        b.decode_frame(b"\x00" * 2000, limits)


def test_overlong_string_field_is_refused(world, keys) -> None:
    env = seal(world["e0"], Kind.COMMIT, pb.Commit(op_id="x" * 300, executor="e0"))
    with pytest.raises(b.DecodeError, match="op_id"):
        open_signed(keys, env, pb.Commit)


def test_too_many_repeated_entries_are_refused(world, keys) -> None:
    env = seal(world["e0"], Kind.PRE_PREPARE, pb.PrePrepare(requests=[pb.Signed()] * 20))
    with pytest.raises(b.DecodeError, match="requests"):
        open_signed(keys, env, pb.PrePrepare, b.WireLimits(max_repeated=10))


def test_unknown_signer_and_bad_signature_are_refused(world, keys) -> None:
    env = seal(b.Ed25519Signer.generate("stranger"), Kind.COMMIT, pb.Commit())
    with pytest.raises(b.DecodeError, match="not in the key directory"):
        open_signed(keys, env, pb.Commit)
    good = seal(world["e0"], Kind.COMMIT, pb.Commit(op_id="a"))
    forged = pb.Signed(
        kind=good.kind, body=bytes(pb.Commit(op_id="b")), signer="e0", signature=good.signature
    )
    with pytest.raises(b.DecodeError, match="bad signature"):
        open_signed(keys, forged, pb.Commit)


def test_a_body_cannot_be_replayed_as_another_kind(world, keys) -> None:
    env = seal(world["e0"], Kind.PREPARE, pb.Prepare(view=1, seq=2, replica="e0"))
    relabeled = pb.Signed(kind=int(Kind.COMMIT_VOTE), body=env.body, signer="e0", signature=env.signature)
    with pytest.raises(b.DecodeError, match="bad signature"):
        open_signed(keys, relabeled, pb.CommitVote)


def test_a_node_identity_and_its_libsodium_signer_sign_alike() -> None:
    """Ed25519 is deterministic: the libsodium signer built from a meshnet identity produces the
    identity's own (OpenSSL) signatures, so either can sign for the same node."""
    from meshnet import NodeIdentity

    ident = NodeIdentity.generate()
    fast = b.Ed25519Signer.from_identity(ident)
    assert (fast.node_id, fast.public_key) == (ident.node_id, ident.public_key)
    payload = signing_payload(int(Kind.PREPARE), ident.node_id, b"body")
    assert fast.sign(payload) == ident.sign(payload)
    keys = {ident.node_id: ident.public_key}
    env = seal(ident, Kind.PREPARE, pb.Prepare(view=1, seq=2, replica=ident.node_id))
    assert open_signed(keys, env, pb.Prepare).seq == 2
    assert (
        seal(fast, Kind.PREPARE, pb.Prepare(view=1, seq=2, replica=ident.node_id)).signature == env.signature
    )


def test_signer_construction_refuses_bad_keys() -> None:
    with pytest.raises(b.BftConsensusError, match="32 raw bytes"):
        b.Ed25519Signer.from_private_bytes(b"short")
    assert repr(b.Ed25519Signer.from_seed(b"s", "x")) == "Ed25519Signer(node_id='x')"  # no key material


def test_a_malformed_public_key_in_the_directory_refuses_instead_of_crashing(world) -> None:
    env = seal(world["e0"], Kind.COMMIT, pb.Commit(op_id="a"))
    for bad in (b"", b"\x01" * 31, b"\x00" * 32):  # too short, and a small-order point
        with pytest.raises(b.DecodeError):
            open_signed({"e0": bad}, env, pb.Commit)
