"""The sans-I/O Latent Spore core, driven by hand: one behaviour per test."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spore
from spore._broadcast import BroadcastQueue, Suspicion


class Cluster:
    """Cores wired by a synchronous in-test network (no simulator): tests choose every step."""

    def __init__(self, trust: spore.NetworkTrust, clock: Callable[[], float], n: int) -> None:
        self.trust, self.clock = trust, clock
        self.cores: dict[str, spore.LatentSpore] = {}
        self.timers: dict[str, dict[str, float]] = {}
        self.wire: list[tuple[str, str, bytes]] = []
        self.changes: list[tuple[str, spore.MemberChanged]] = []
        self.down: set[str] = set()
        for i in range(n):
            core = spore.LatentSpore(
                spore.Ed25519Signer.from_seed(f"g{i}".encode()),
                trust,
                clock=clock,
                rng=random.Random(i),
                incarnation=1,
            )
            self.cores[core.node_id] = core
            self.timers[core.node_id] = {}
        self.ids = list(self.cores)

    def feed(self, node: str, event: spore.Event) -> list[spore.Action]:
        actions = self.cores[node].handle(event)
        for a in actions:
            if isinstance(a, spore.Send):
                self.wire.append((node, a.dst, a.data))
            elif isinstance(a, spore.SetTimer):
                self.timers[node][a.tag] = a.delay
            elif isinstance(a, spore.CancelTimer):
                self.timers[node].pop(a.tag, None)
            elif isinstance(a, spore.MemberChanged):
                self.changes.append((node, a))
        return actions

    def deliver(self, limit: int = 10_000) -> int:
        count = 0
        while self.wire and count < limit:
            src, dst, data = self.wire.pop(0)
            count += 1
            if dst in self.cores and dst not in self.down and src not in self.down:
                self.feed(dst, spore.Received(src, data))
        return count

    def fire(self, node: str, tag: str) -> list[spore.Action]:
        self.timers[node].pop(tag, None)
        return self.feed(node, spore.TimerFired(tag))

    def join_all(self) -> None:
        for node in self.ids:
            self.feed(node, spore.Start((self.ids[0],) if node != self.ids[0] else ()))
            self.deliver()
        for _ in range(5):  # a few gossip rounds spread the joins
            for node in self.ids:
                self.fire(node, "gossip")
            self.deliver()


def _sent(actions: list[spore.Action]) -> list[tuple[str, spore.Envelope]]:
    return [(a.dst, spore.decode_envelope(a.data)) for a in actions if isinstance(a, spore.Send)]


@pytest.fixture
def cluster(trust: spore.NetworkTrust, clock: Callable[[], float]) -> Cluster:
    c = Cluster(trust, clock, 5)
    c.join_all()
    return c


def test_join_through_one_contact_gives_everyone_the_full_view(cluster: Cluster) -> None:
    for node, core in cluster.cores.items():
        assert sorted(core.alive()) == sorted(set(cluster.ids) - {node})


def test_a_ping_is_answered_with_an_ack(cluster: Cluster) -> None:
    a, b = cluster.ids[:2]
    ping = spore.encode_envelope(spore.Envelope("net-a", a, spore.Ping(77, b)))
    (dst, env), *_ = _sent(cluster.feed(b, spore.Received(a, ping)))
    assert dst == a
    assert env.body == spore.Ack(77)


def test_a_silent_member_gets_indirect_probes_then_is_suspected(cluster: Cluster) -> None:
    a = cluster.ids[0]
    core = cluster.cores[a]
    sent = _sent(cluster.fire(a, "probe"))
    ((target, _ping),) = [(d, e) for d, e in sent if isinstance(e.body, spore.Ping)]
    cluster.down.add(target)
    cluster.wire.clear()
    reqs = _sent(cluster.fire(a, "probe_timeout"))
    helpers = {d for d, e in reqs if isinstance(e.body, spore.PingReq)}
    assert len(helpers) == 3
    assert target not in helpers
    assert a not in helpers
    cluster.deliver()  # helpers ping the (down) target, hear nothing
    for h in helpers:  # Lifeguard: each helper nacks before our period ends
        relay_tags = [t for t in cluster.timers[h] if t.startswith("relay:")]
        for tag in relay_tags:
            cluster.fire(h, tag)
    cluster.deliver()
    cluster.fire(a, "probe")  # end of the period
    assert core.state_of(target) is spore.MemberState.SUSPECT
    assert core.stats.probes_failed == 1
    assert core.awareness == 0  # every helper nacked: the problem is the target, not us


def test_missing_nacks_raise_our_own_health_score(cluster: Cluster) -> None:
    a = cluster.ids[0]
    sent = _sent(cluster.fire(a, "probe"))
    (_target,) = [d for d, e in sent if isinstance(e.body, spore.Ping)]
    cluster.wire.clear()
    cluster.fire(a, "probe_timeout")
    cluster.wire.clear()  # we are cut off: neither acks nor nacks come back
    cluster.fire(a, "probe")
    assert cluster.cores[a].awareness == 3
    assert cluster.timers[a]["probe"] == pytest.approx(4 * cluster.cores[a].config.probe_interval)


def test_a_suspected_node_refutes_with_a_higher_incarnation(cluster: Cluster) -> None:
    a, b = cluster.ids[:2]
    victim = cluster.cores[b]
    before = victim.record.incarnation
    claim = spore.Update(spore.MemberState.SUSPECT, b, before, None, a)
    cluster.feed(b, spore.Received(a, spore.encode_envelope(spore.Envelope("net-a", a, None, (claim,)))))
    assert victim.record.incarnation == before + 1
    assert victim.stats.refutations == 1
    cluster.fire(b, "gossip")
    cluster.deliver()
    alive_claims = [
        u for _, env in [(0, spore.decode_envelope(d)) for _, _, d in cluster.wire] for u in env.updates
    ]
    assert all(u.incarnation > before for u in alive_claims if u.node_id == b)


def test_a_refutation_clears_the_suspicion_everywhere(cluster: Cluster, clock: Callable[[], float]) -> None:
    a, b = cluster.ids[:2]
    cluster.feed(a, spore.Received(cluster.ids[2], spore.encode_envelope(spore.Envelope(
        "net-a", cluster.ids[2], None, (spore.Update(spore.MemberState.SUSPECT, b, 1, None, cluster.ids[2]),)
    ))))  # fmt: skip
    assert cluster.cores[a].state_of(b) is spore.MemberState.SUSPECT
    for _ in range(6):
        for node in cluster.ids:
            cluster.fire(node, "gossip")
        cluster.deliver()
    assert all(c.state_of(b) is spore.MemberState.ALIVE for n, c in cluster.cores.items() if n != b)
    assert cluster.cores[a].stats.suspicions_refuted == 1


def test_an_unrefuted_suspicion_becomes_dead(cluster: Cluster) -> None:
    a, b = cluster.ids[:2]
    cluster.down.add(b)
    cluster.feed(a, spore.Received(cluster.ids[2], spore.encode_envelope(spore.Envelope(
        "net-a", cluster.ids[2], None, (spore.Update(spore.MemberState.SUSPECT, b, 1, None, cluster.ids[2]),)
    ))))  # fmt: skip
    assert f"suspect:{b}" in cluster.timers[a]
    cluster.fire(a, f"suspect:{b}")
    assert cluster.cores[a].state_of(b) is spore.MemberState.DEAD
    assert (
        a,
        spore.MemberChanged(b, spore.MemberState.DEAD, cluster.cores[a].members[b].record),
    ) in cluster.changes


def test_independent_confirmations_shrink_the_suspicion_timeout() -> None:
    s = Suspicion(start=0.0, incarnation=1, min_timeout=4.0, max_timeout=24.0, expected=2)
    assert s.remaining(0.0) == pytest.approx(24.0)
    assert s.confirm("x")
    assert not s.confirm("x")  # the same member twice is not independent
    mid = s.remaining(0.0)
    assert 4.0 < mid < 24.0
    assert s.confirm("y")
    assert s.remaining(0.0) == pytest.approx(4.0)
    assert not s.confirm("z")  # beyond k: no further effect


def test_a_sender_of_a_forged_record_is_quarantined_until_confirmed(
    cluster: Cluster, make_record: Callable[..., spore.SporeRecord]
) -> None:
    a, mallory = cluster.ids[:2]
    core = cluster.cores[a]
    forged = attrs.evolve(make_record("newcomer"), addresses=("6.6.6.6:6",))
    bad = spore.Update(spore.MemberState.ALIVE, forged.node_id, 1, forged, mallory)
    cluster.feed(
        a, spore.Received(mallory, spore.encode_envelope(spore.Envelope("net-a", mallory, None, (bad,))))
    )
    assert core.stats.rejected["bad_signature"] == 1
    assert forged.node_id not in core.members
    # While quarantined, even valid data from mallory is not merged.
    good = make_record("newcomer")
    ok = spore.Update(spore.MemberState.ALIVE, good.node_id, 1, good, mallory)
    env = spore.encode_envelope(spore.Envelope("net-a", mallory, None, (ok,)))
    cluster.feed(a, spore.Received(mallory, env))
    assert good.node_id not in core.members
    assert core.stats.updates_quarantined == 1
    # A direct probe of mallory that mallory answers confirms it.
    core._probe_order = [mallory]
    cluster.wire.clear()
    cluster.fire(a, "probe")
    cluster.deliver()
    cluster.feed(a, spore.Received(mallory, env))
    assert good.node_id in core.members


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (lambda _b: b"\xff\xff\xff", "malformed"),
        (lambda b: spore.encode_envelope(spore.Envelope("net-b", b, spore.Ack(1))), "wrong_network"),
        (lambda _b: b"\x0a\x01a" * 400_000, "oversized"),
    ],
)
def test_bad_datagrams_are_counted_and_the_node_keeps_running(
    cluster: Cluster, data: Callable[[str], bytes], reason: str
) -> None:
    a, b = cluster.ids[:2]
    assert cluster.feed(a, spore.Received(b, data(b))) == []
    assert cluster.cores[a].stats.rejected[reason] == 1
    ping = spore.encode_envelope(spore.Envelope("net-a", b, spore.Ping(5, a)))
    assert _sent(cluster.feed(a, spore.Received(b, ping)))[0][1].body == spore.Ack(5)


def test_a_sender_claiming_another_identity_is_refused(cluster: Cluster) -> None:
    a, b, c = cluster.ids[:3]
    spoof = spore.encode_envelope(spore.Envelope("net-a", c, spore.Ping(1, a)))
    assert cluster.feed(a, spore.Received(b, spoof)) == []
    assert cluster.cores[a].validator.is_quarantined(b)


def test_leave_marks_the_node_left_not_dead(cluster: Cluster) -> None:
    a, b = cluster.ids[:2]
    cluster.feed(b, spore.Leave())
    cluster.deliver()
    for _ in range(4):
        for node in cluster.ids:
            cluster.fire(node, "gossip")
        cluster.deliver()
    assert cluster.cores[a].state_of(b) is spore.MemberState.LEFT


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="probe_interval must be > 0"):
        spore.GossipConfig(probe_interval=0)
    with pytest.raises(ValueError, match="probe_timeout"):
        spore.GossipConfig(probe_timeout=2.0)


def test_parameters_follow_cluster_size_and_measured_loss() -> None:
    cfg = spore.GossipConfig()
    assert cfg.retransmit_limit(9) == 4
    assert cfg.retransmit_limit(99) == 8
    assert cfg.retransmit_limit(99, loss=0.1) == 9
    assert cfg.fanout(0.0) == 3
    assert cfg.fanout(0.1) == 4
    assert cfg.suspicion_bounds(10) == (4.0, 24.0)
    assert cfg.suspicion_bounds(1000)[0] == pytest.approx(12.0)
    assert cfg.push_pull_period(32) == 30.0
    assert cfg.push_pull_period(256) == 120.0
    fixed = spore.GossipConfig(adaptive=False)
    assert fixed.fanout(0.5) == 3


def test_a_ping_from_an_unknown_member_pulls_its_state_once(
    cluster: Cluster, make_record: Callable[..., spore.SporeRecord]
) -> None:
    a = cluster.ids[0]
    stranger = "stranger-node"
    ping = spore.encode_envelope(spore.Envelope("net-a", stranger, spore.Ping(3, a)))
    first = _sent(cluster.feed(a, spore.Received(stranger, ping)))
    assert [type(e.body) for d, e in first if d == stranger] == [spore.Ack, spore.PushPull]
    again = _sent(cluster.feed(a, spore.Received(stranger, ping)))
    assert [type(e.body) for d, e in again if d == stranger] == [spore.Ack]  # rate-limited


def test_config_loads_from_a_mapping_and_names_unknown_keys() -> None:
    import tomllib

    cfg = spore.GossipConfig.from_mapping(tomllib.loads("probe_interval = 2.0\ngossip_nodes = 4\n"))
    assert cfg.probe_interval == 2.0
    assert cfg.gossip_nodes == 4
    with pytest.raises(spore.ConfigError, match="unknown GossipConfig keys \\['probe_intervall'\\]"):
        spore.GossipConfig.from_mapping({"probe_intervall": 1.0})
    with pytest.raises(spore.ConfigError, match="gossip_nodes must be >= 1"):
        spore.GossipConfig.from_mapping({"gossip_nodes": 0})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(0, 7)),
            st.tuples(st.just("take"), st.integers(1, 4), st.integers(1, 4)),
        ),
        max_size=60,
    )
)
def test_the_heap_ordered_queue_takes_what_a_full_sort_would(ops: list[tuple[object, ...]]) -> None:
    """The queue keeps a lazy heap instead of sorting on every send: same picks, same drops."""
    queue = BroadcastQueue()
    model: dict[str, list[int]] = {}  # node -> [transmits, order]
    order = 0
    for op in ops:
        if op[0] == "push":
            order += 1
            node = f"n{op[1]}"
            queue.push(spore.Update(spore.MemberState.SUSPECT, node, order))
            model[node] = [0, order]
        else:
            _, max_items, limit = op
            assert isinstance(max_items, int)
            assert isinstance(limit, int)
            ranked = sorted(model, key=lambda n: (model[n][0], -model[n][1]))[:max_items]
            for n in ranked:
                model[n][0] += 1
                if model[n][0] >= limit:
                    del model[n]
            assert [u.node_id for u in queue.take(max_items, limit)] == ranked
        assert len(queue) == len(model)
