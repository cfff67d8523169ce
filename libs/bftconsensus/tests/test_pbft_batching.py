"""How the primary fills batches: it holds a part-filled batch back for the clients it just
answered (until none came for ``batch_delay``, at most HOLD_LIMIT times that in all), so that one
batch carries them all instead of each group of clients waiting for the others' batches; a lone
client is never kept waiting.
"""

from __future__ import annotations

from collections import deque

import pytest

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._wire import Kind, decode_frame, open_unsigned, seal

MEMBERS = ("e0", "e1", "e2", "e3")
CLIENTS = ("ca", "cb", "cc")


@pytest.fixture
def cluster(world: dict[str, b.Ed25519Signer], keys: dict[str, bytes]) -> _Cluster:
    return _Cluster(world, keys, b.ReplicaConfig(MEMBERS))


class _Cluster:
    """Four replicas wired together by hand: frames between them wait until ``settle()``."""

    def __init__(
        self, world: dict[str, b.Ed25519Signer], keys: dict[str, bytes], config: b.ReplicaConfig
    ) -> None:
        self.clients = {c: b.Ed25519Signer.from_seed(c.encode(), c) for c in CLIENTS}
        directory = dict(keys) | {c: s.public_key for c, s in self.clients.items()}
        self.replicas = {m: b.Replica(world[m], directory, config, b.KeyValueStore()) for m in MEMBERS}
        self.queue: deque[tuple[str, b.Action]] = deque()

    def request(self, client: str, ts: int) -> list[b.Action]:
        """The client's request reaches the primary over the client's own link: what it does."""
        env = seal(self.clients[client], Kind.CLIENT_REQUEST, pb.ClientRequest(client, ts, b"put %d" % ts))
        return self._queue("e0", self.replicas["e0"].receive(client, bytes(env)))

    def timer(self, tag: str) -> list[b.Action]:
        return self._queue("e0", self.replicas["e0"].timer(tag))

    def settle(self) -> None:
        """Deliver every frame between replicas until none is left."""
        while self.queue:
            src, action = self.queue.popleft()
            assert isinstance(action, b.Send)
            self._queue(action.dst, self.replicas[action.dst].receive(src, action.frame))

    def _queue(self, src: str, actions: list[b.Action]) -> list[b.Action]:
        self.queue.extend((src, a) for a in actions if isinstance(a, b.Send) and a.dst in self.replicas)
        return actions


def _batches(actions: list[b.Action]) -> list[list[str]]:
    """The clients of each batch the primary proposed (once per batch, not per backup)."""
    seen: dict[int, list[str]] = {}
    for a in actions:
        if isinstance(a, b.Send):
            env = decode_frame(a.frame)
            if env.kind == int(Kind.PRE_PREPARE):
                pp = open_unsigned(env, pb.PrePrepare)
                seen[pp.seq] = [r.signer for r in pp.requests]
    return [seen[s] for s in sorted(seen)]


def _timers(actions: list[b.Action]) -> list[b.Action]:
    return [a for a in actions if isinstance(a, b.SetTimer | b.CancelTimer) and a.tag.startswith("batch")]


def _two_clients_answered_together(c: _Cluster) -> None:
    """ca's request goes alone; cb and cc, arriving meanwhile, share the next batch."""
    assert _batches(c.request("ca", 1)) == [["ca"]]  # nothing else expected: proposed at once
    assert _batches(c.request("cb", 1)) == []  # one batch in flight
    assert _batches(c.request("cc", 1)) == []
    c.settle()  # the first batch executes, the second leaves at once and executes too
    assert [r.last_executed for r in c.replicas.values()] == [2, 2, 2, 2]


def test_the_primary_holds_a_batch_for_the_clients_it_just_answered(cluster: _Cluster) -> None:
    _two_clients_answered_together(cluster)
    assert cluster.replicas["e0"].returning == {"cb", "cc"}  # answered by a batch of two
    out = cluster.request("ca", 2)  # cb and cc were answered by a batch of two: expected back
    assert _batches(out) == []
    assert _timers(out) == [b.SetTimer("batch-limit", 4 * 0.002), b.SetTimer("batch", 0.002)]
    out = cluster.request("cb", 2)
    assert _batches(out) == []  # still holding for cc, for batch_delay from now: the gap re-armed,
    assert _timers(out) == [b.SetTimer("batch", 0.002)]  # the limit left as it was
    out = cluster.request("cc", 2)  # everyone expected is back: one batch for the three
    assert _batches(out) == [["ca", "cb", "cc"]]
    assert _timers(out) == [b.CancelTimer("batch"), b.CancelTimer("batch-limit")]
    cluster.settle()
    assert cluster.replicas["e3"].last_executed == 3


@pytest.mark.parametrize("tag", ["batch", "batch-limit"])
def test_either_batch_timer_sends_what_came_when_a_client_does_not(cluster: _Cluster, tag: str) -> None:
    _two_clients_answered_together(cluster)
    cluster.request("ca", 2)
    cluster.request("cb", 2)
    out = cluster.timer(tag)  # cc never sent again (or too late: the limit)
    assert _batches(out) == [["ca", "cb"]]
    assert _timers(out) == [b.CancelTimer("batch"), b.CancelTimer("batch-limit")]
    assert cluster.replicas["e0"].returning == set()  # cc is no longer expected
    cluster.settle()
    assert cluster.replicas["e2"].last_executed == 3


def test_a_batch_of_one_expects_nobody(cluster: _Cluster) -> None:
    assert _batches(cluster.request("ca", 1)) == [["ca"]]
    cluster.settle()
    assert cluster.replicas["e0"].returning == set()
    out = cluster.request("ca", 2)  # a lone client is never kept waiting for itself
    assert _batches(out) == [["ca"]]
    assert _timers(out) == []


def test_a_batch_delay_of_zero_never_holds(world: dict[str, b.Ed25519Signer], keys: dict[str, bytes]) -> None:
    cluster = _Cluster(world, keys, b.ReplicaConfig(MEMBERS, batch_delay=0))
    _two_clients_answered_together(cluster)
    assert cluster.replicas["e0"].returning == set()
    out = cluster.request("ca", 2)
    assert _batches(out) == [["ca"]]
    assert _timers(out) == []


@pytest.mark.parametrize("delay", [-0.001, 0.5, 2.0, float("nan")])
def test_the_longest_hold_must_be_below_the_view_change_timeout(delay: float) -> None:
    with pytest.raises(b.ConfigError, match="batch_delay"):
        b.ReplicaConfig(MEMBERS, batch_delay=delay)  # view_change_timeout 2 s: 4 x 0.5 is too long
    assert b.ReplicaConfig(MEMBERS, batch_delay=0.49).batch_delay == 0.49
