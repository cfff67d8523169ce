"""A faulty replica cannot grow another replica's memory without bound."""

from __future__ import annotations

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._wire import Kind, seal

MEMBERS = ("e0", "e1", "e2", "e3")


def test_prepares_with_made_up_digests_are_bounded_per_slot(world, keys) -> None:
    r = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    for i in range(200):
        vote = seal(world["e1"], Kind.PREPARE, pb.Prepare(0, 1, i.to_bytes(32, "big"), "e1"))
        r.receive("e1", bytes(vote))
    assert len(r.log[1].prepares) <= 4 * len(MEMBERS)


def test_only_each_replicas_latest_view_change_is_kept(world, keys) -> None:
    r = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    for view in range(1, 60):
        vc = seal(world["e1"], Kind.VIEW_CHANGE, pb.ViewChange(new_view=view, replica="e1"))
        r.receive("e1", bytes(vc))
    assert sum(len(t) for t in r.view_changes.values()) == 1
    assert list(r.view_changes) == [59]
    assert r.view == 0  # one replica alone cannot move anyone to a new view


def test_f_plus_one_view_changes_make_a_replica_join(world, keys) -> None:
    r = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    out: list[b.Action] = []
    for sender in ("e1", "e2"):
        vc = seal(world[sender], Kind.VIEW_CHANGE, pb.ViewChange(new_view=1, replica=sender))
        out += r.receive(sender, bytes(vc))
    assert r.in_view_change
    assert r.vc_target == 1
    sent = [b.decode_frame(a.frame) for a in out if isinstance(a, b.Send)]
    assert {env.kind for env in sent} == {int(Kind.VIEW_CHANGE)}


def test_quorums_intersect_in_an_honest_replica_and_stay_reachable_for_every_size() -> None:
    from bftconsensus._certs import faults_tolerated, quorum_size

    for n in range(1, 40):
        f, q = faults_tolerated(n), quorum_size(n)
        assert 2 * q - n >= f + 1, n  # any two quorums share at least one honest replica
        assert q <= n - f, n  # and f silent replicas cannot block one
    assert [quorum_size(n) for n in (1, 3, 4, 5, 7)] == [1, 2, 3, 4, 5]  # 2f+1 only when n = 3f+1


def test_unsigned_commits_count_only_from_the_replica_they_name(world, keys) -> None:
    r = b.Replica(world["e0"], keys, b.ReplicaConfig(MEMBERS), b.KeyValueStore())
    digest = b"d" * 32

    def commit(name: str) -> bytes:
        return bytes(pb.Signed(int(Kind.COMMIT_VOTE), bytes(pb.CommitVote(0, 1, digest, name)), name))

    r.receive("e1", commit("e2"))  # e1 relaying (or forging) e2's commit: not e2's link
    r.receive("e1", commit("e1"))
    r.receive("e3", commit("e1"))
    assert set(r.log[1].commits[(0, digest)]) == {"e1"}
    forged = pb.Signed(int(Kind.COMMIT_VOTE), bytes(pb.CommitVote(0, 1, digest, "e2")), "e2", b"\x00" * 64)
    r.receive("e2", bytes(forged))  # a signature, if present, must verify
    assert set(r.log[1].commits[(0, digest)]) == {"e1"}
    r.receive("e2", commit("e2"))
    assert set(r.log[1].commits[(0, digest)]) == {"e1", "e2"}


def test_sign_all_messages_signs_commits_and_replies(world, keys) -> None:
    from bftconsensus._wire import decode_frame

    def run(sign: bool) -> tuple[set[int], set[int]]:
        """Drive one request through a 1-replica cluster; (signed kinds, unsigned kinds) it emitted."""
        cfg = b.ReplicaConfig(("e0",), sign_all_messages=sign, reply_all=True)
        r = b.Replica(world["e0"], keys, cfg, b.KeyValueStore())
        client = b.Client(world["client"], keys, ["e0"])
        (send, *_) = client.submit(b"put k v")
        assert isinstance(send, b.Send)
        out = r.receive("client", send.frame)
        envs = [decode_frame(a.frame) for a in out if isinstance(a, b.Send)]
        replies = [e for e in envs if e.kind == int(Kind.REPLY)]
        assert replies
        for a in out:
            if isinstance(a, b.Send):
                client.receive("e0", a.frame)
        assert client.result == b"ok"
        commit = r._commit_vote(1, b"d" * 32)
        kinds = [(e.kind, bool(e.signature)) for e in [*replies, commit]]
        return {k for k, s in kinds if s}, {k for k, s in kinds if not s}

    assert run(True) == ({int(Kind.REPLY), int(Kind.COMMIT_VOTE)}, set())
    assert run(False) == (set(), {int(Kind.REPLY), int(Kind.COMMIT_VOTE)})


def test_an_unsigned_reply_carries_its_encoded_reply_for_bundling(world, keys) -> None:
    """A driver may put unsigned replies for one link in a REPLIES frame: the action hands it the
    encoded Reply, the very body of its own frame. Signed replies are never bundled."""
    from bftconsensus._actions import SendReply
    from bftconsensus._wire import decode_frame

    for sign in (False, True):
        cfg = b.ReplicaConfig(("e0",), sign_all_messages=sign)
        r = b.Replica(world["e0"], keys, cfg, b.KeyValueStore())
        (send, *_) = b.Client(world["client"], keys, ["e0"]).submit(b"put k v")
        assert isinstance(send, b.Send)
        replies = [a for a in r.receive("client", send.frame) if isinstance(a, b.Send) and a.dst == "client"]
        assert len(replies) == 1
        if sign:
            assert not isinstance(replies[0], SendReply)
        else:
            assert isinstance(replies[0], SendReply)
            assert decode_frame(replies[0].frame).body == replies[0].reply
            assert pb.Reply().parse(replies[0].reply).result == b"ok"
