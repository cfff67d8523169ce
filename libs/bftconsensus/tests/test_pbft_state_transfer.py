"""State transfer corner cases the simulator found (each stopped a replica for good)."""

from __future__ import annotations

import hashlib

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._wire import Kind, decode_frame, seal

MEMBERS = ("e0", "e1", "e2", "e3")


def _checkpoints(world, seq: int, digest: bytes, signers=("e0", "e1", "e2")) -> list[pb.Signed]:
    return [seal(world[s], Kind.CHECKPOINT, pb.Checkpoint(seq, digest, s)) for s in signers]


def _state_requests(actions: list[b.Action]) -> int:
    sends = [a for a in actions if isinstance(a, b.Send)]
    return sum(decode_frame(a.frame).kind == int(Kind.STATE_REQUEST) for a in sends)


def test_a_replica_behind_a_stable_checkpoint_keeps_asking_for_state(world, keys) -> None:
    """Its first request may reach replicas that had not yet made that checkpoint stable."""
    r = b.Replica(world["e3"], keys, b.ReplicaConfig(MEMBERS, checkpoint_interval=4), b.KeyValueStore())
    out: list[b.Action] = []
    for env in _checkpoints(world, 4, b"s" * 32):
        out += r.receive(env.signer, bytes(env))
    assert (r.stable_seq, r.last_executed) == (4, 0)
    assert _state_requests(out) == len(MEMBERS) - 1
    assert _state_requests(r.timer("state")) == len(MEMBERS) - 1  # no reply came: ask again


def test_a_snapshot_is_applied_even_when_its_new_view_cannot_be_checked(world, keys) -> None:
    """A replica that joined after a view change cannot check the old NEW-VIEW; the snapshot
    carries its own certificate and must not be lost with it."""
    config = b.ReplicaConfig(MEMBERS, checkpoint_interval=4)
    donor = b.Replica(world["e1"], keys, config, b.KeyValueStore())
    donor.app.apply(b"put k v")
    snap = donor.state_bytes()
    proof = _checkpoints(world, 4, hashlib.sha256(snap).digest())
    bad_vc = seal(world["e5"], Kind.VIEW_CHANGE, pb.ViewChange(new_view=1, replica="e5"))  # not a member
    new_view = seal(world["e1"], Kind.NEW_VIEW, pb.NewView(view=1, view_changes=[bad_vc]))
    resp = pb.StateResponse(seq=4, snapshot=snap, checkpoint_proof=proof, new_view=new_view)

    r = b.Replica(world["e3"], keys, config, b.KeyValueStore())
    r.receive("e1", bytes(seal(world["e1"], Kind.STATE_RESPONSE, resp)))
    assert r.last_executed == 4
    assert r.view == 0  # the NEW-VIEW itself was refused
    assert r.app.apply(b"get k") == b"v"
