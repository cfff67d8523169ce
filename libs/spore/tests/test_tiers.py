"""Primary Spore, Seed Spores, the discovery chain, partition evidence, per-network views."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path

import anyio
import attrs
import pytest

import meshnet
import spore


def test_spore_node_ids_are_meshnets_node_ids(signer_for: Callable[[str], spore.Ed25519Signer]) -> None:
    key = signer_for("x").public_key
    assert spore.default_node_id(key) == meshnet.node_id_for(key)


# ----- Primary Spore -----
async def _fill(authority: spore.LocalPrimaryAuthority, records: Iterable[spore.SporeRecord]) -> None:
    for r in records:
        await authority.put(r)


def test_the_primary_view_follows_the_authority_and_snapshots_atomically(
    tmp_path: Path,
    trust: spore.NetworkTrust,
    clock: Callable[[], float],
    make_record: Callable[..., spore.SporeRecord],
) -> None:
    path = tmp_path / "primary.snap"
    authority = spore.LocalPrimaryAuthority("net-a")
    view = spore.PrimaryView(trust, clock)
    s1, s2 = make_record("s1", role=spore.Role.SCLEROTIUM), make_record("s2", role=spore.Role.SCLEROTIUM)

    async def scenario() -> None:
        await _fill(authority, [s1])
        async with anyio.create_task_group() as tg:
            tg.start_soon(spore.follow_primary, authority, view, path)
            await authority.put(s2)
            await authority.remove(s1.node_id)
            with anyio.fail_after(5):
                while view.revision < 3:  # noqa: ASYNC110 - the view has no change notification
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

    anyio.run(scenario)
    assert set(view.members) == {s2.node_id}
    assert view.admits(s2) is True
    assert view.admits(s1) is False
    restarted = spore.PrimaryView(trust, clock)
    assert restarted.restore(path)
    assert restarted.revision == 3
    assert set(restarted.members) == {s2.node_id}
    assert restarted.admits(s2) is None  # not following yet: "cannot tell", gossip falls back
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_a_corrupt_snapshot_file_raises_a_decode_error(
    tmp_path: Path, trust: spore.NetworkTrust, clock: Callable[[], float]
) -> None:
    path = tmp_path / "primary.snap"
    path.write_bytes(b"\x1a\x05garbage-that-is-not-a-record")
    with pytest.raises(spore.DecodeError):
        spore.PrimaryView(trust, clock).restore(path)


def test_the_primary_view_drops_records_that_fail_validation(
    trust: spore.NetworkTrust, clock: Callable[[], float], make_record: Callable[..., spore.SporeRecord]
) -> None:
    view = spore.PrimaryView(trust, clock)
    forged = attrs.evolve(make_record("s1", role=spore.Role.SCLEROTIUM), addresses=("6.6.6.6:1",))
    view.load_snapshot(spore.PrimarySnapshot("net-a", 1, (forged, make_record("h"))))
    assert list(view.members) == [make_record("h").node_id]
    assert view.validator.rejected["bad_signature"] == 1


def test_gossip_merges_only_what_a_reachable_primary_admits(
    trust: spore.NetworkTrust, clock: Callable[[], float], make_record: Callable[..., spore.SporeRecord]
) -> None:
    view = spore.PrimaryView(trust, clock)
    admitted = make_record("in")
    view.load_snapshot(spore.PrimarySnapshot("net-a", 1, (admitted,)))
    view.reachable = True
    core = spore.LatentSpore(
        spore.Ed25519Signer.from_seed(b"me"), trust, clock=clock, rng=random.Random(1), oracle=view
    )
    outsider = make_record("out")
    updates = tuple(spore.Update(spore.MemberState.ALIVE, r.node_id, 1, r, "x") for r in (admitted, outsider))
    core.handle(spore.Received("x", spore.encode_envelope(spore.Envelope("net-a", "x", None, updates))))
    assert set(core.members) == {admitted.node_id}
    assert core.stats.rejected["not_in_primary"] == 1


# ----- Seed Spores -----
def test_a_master_seed_round_trips_and_verifies_against_the_network_key(
    network_signer: spore.Ed25519Signer,
    clock: Callable[[], float],
    make_record: Callable[..., spore.SporeRecord],
) -> None:
    first = make_record("founder", role=spore.Role.SCLEROTIUM)
    seed = spore.build_seed(
        network_signer, network_id="net-a", entry_points=["127.0.0.1:7000"], bootstrap=[first],
        issued_at=clock(), ttl=3600,
    )  # fmt: skip
    back = spore.decode_seed(spore.encode_seed(seed))
    assert back == seed
    assert back.is_master
    assert back.verify(network_signer.public_key, clock())
    assert not back.verify(spore.Ed25519Signer.from_seed(b"other").public_key, clock())
    assert not back.verify(network_signer.public_key, clock() + 7200)  # expired
    tampered = attrs.evolve(back, entry_points=("6.6.6.6:1",))
    assert not tampered.verify(network_signer.public_key, clock())


def test_a_service_seed_is_signed_by_the_service_key(clock: Callable[[], float]) -> None:
    service_key = spore.Ed25519Signer.from_seed(b"svc")
    seed = spore.build_seed(
        service_key,
        network_id="net-a",
        service="blocks",
        entry_points=["10.0.0.1:9000"],
        issued_at=clock(),
        ttl=60,
    )
    assert not seed.is_master
    assert seed.service_public_key == service_key.public_key
    assert seed.verify(service_key.public_key, clock())


@pytest.mark.parametrize("data", [b"\xff" * 10, b"\x22" + b"\xff" * 70000, b"\x2a\x03abc"])
def test_the_seed_decoder_rejects_bad_bytes(data: bytes) -> None:
    with pytest.raises(spore.DecodeError):
        spore.decode_seed(data)


# ----- discovery chain -----
def test_discovery_walks_the_tiers_in_order_and_stops_when_it_has_enough(
    trust: spore.NetworkTrust, clock: Callable[[], float], make_record: Callable[..., spore.SporeRecord]
) -> None:
    scl = [make_record(f"s{i}", role=spore.Role.SCLEROTIUM) for i in range(4)]
    asked: list[str] = []

    def tier(name: str, records: list[spore.SporeRecord]) -> Callable[[], object]:
        async def fetch() -> list[spore.SporeRecord]:
            asked.append(name)
            if name == "rhizomorph":
                raise ConnectionError("no Rhizomorph reachable")
            return records

        return fetch

    forged = attrs.evolve(scl[3], addresses=("6.6.6.6:1",))
    fetchers = {
        "cache": tier("cache", [scl[0], make_record("hypha")]),
        "rhizomorph": tier("rhizomorph", []),
        "seed": tier("seed", [scl[1], forged]),
        "latent": tier("latent", [scl[2]]),
    }
    chain = spore.DiscoveryChain(spore.RecordValidator(trust, clock), want=3)
    found = anyio.run(spore.discover, chain, fetchers)  # type: ignore[arg-type]
    assert asked == ["cache", "rhizomorph", "seed", "latent"]
    assert {r.node_id for r in found} == {scl[0].node_id, scl[1].node_id, scl[2].node_id}
    assert [s.source for s in chain.trail] == asked
    assert "ConnectionError" in chain.trail[1].error
    assert chain.validator.rejected["bad_signature"] == 1


def test_a_warm_cache_needs_no_network(
    trust: spore.NetworkTrust, clock: Callable[[], float], make_record: Callable[..., spore.SporeRecord]
) -> None:
    chain = spore.DiscoveryChain(spore.RecordValidator(trust, clock), want=2)
    assert chain.next_source() == "cache"
    chain.offer("cache", [make_record(f"s{i}", role=spore.Role.SCLEROTIUM) for i in range(2)])
    assert chain.next_source() is None
    assert len(chain.sclerotia()) == 2


def test_discovery_rejects_unknown_tiers(trust: spore.NetworkTrust, clock: Callable[[], float]) -> None:
    with pytest.raises(spore.SporeError, match="unknown discovery tiers"):
        spore.DiscoveryChain(spore.RecordValidator(trust, clock), order=("cache", "dns"))


# ----- partition evidence and networks -----
def test_reachability_reports_since_when() -> None:
    t = spore.ReachabilityTracker("me")
    t.observe("a", True, 1.0)
    t.observe("a", True, 2.0)
    t.observe("b", True, 1.0)
    t.observe("b", False, 3.0)
    r = t.report(4.0)
    assert r.reachable == {"a": 1.0}
    assert r.unreachable == {"b": 3.0}


def test_two_networks_keep_separate_views_and_cross_only_by_federation(
    clock: Callable[[], float], make_record: Callable[..., spore.SporeRecord]
) -> None:
    me = spore.Ed25519Signer.from_seed(b"me")
    a = spore.LatentSpore(me, spore.NetworkTrust("net-a"), clock=clock, rng=random.Random(1))
    b = spore.LatentSpore(me, spore.NetworkTrust("net-b"), clock=clock, rng=random.Random(2))
    views = spore.NetworkViews()
    views.add(a)
    views.add(b)
    r = make_record("peer-b", network_id="net-b")
    up = spore.Update(spore.MemberState.ALIVE, r.node_id, 1, r, "x")
    data = spore.encode_envelope(spore.Envelope("net-b", "x", None, (up,)))
    a.handle(spore.Received("x", data))  # net-b gossip reaching the net-a view is refused
    b.handle(spore.Received("x", data))
    assert r.node_id not in a.members
    assert r.node_id in b.members
    assert a.stats.rejected["wrong_network"] == 1
    with pytest.raises(spore.UnknownNetworkError, match="no federation link"):
        views.lookup("net-b", on_behalf_of="net-a")
    views.federate("net-a", "net-b")
    assert [x.node_id for x in views.lookup("net-b", on_behalf_of="net-a")] == [r.node_id]
    with pytest.raises(spore.UnknownNetworkError, match="not in network"):
        views.view("net-c")


def test_metrics_export_counters_and_members_by_state(
    trust: spore.NetworkTrust, clock: Callable[[], float], make_record: Callable[..., spore.SporeRecord]
) -> None:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    metrics = spore.SporeMetrics(reg)
    core = spore.LatentSpore(spore.Ed25519Signer.from_seed(b"m"), trust, clock=clock, rng=random.Random(1))
    r = make_record("p")
    core.handle(spore.Received("x", b"\xff\xff"))
    core.handle(spore.Received("y", spore.encode_envelope(spore.Envelope(
        "net-a", "y", spore.Ping(1, core.node_id), (spore.Update(spore.MemberState.ALIVE, r.node_id, 1, r, "y"),)
    ))))  # fmt: skip
    metrics.sync(core)
    metrics.sync(core)  # idempotent: only growth is exported
    metrics.member_changed(core)
    get = reg.get_sample_value
    assert get("mycelium_spore_records_rejected_total", {"network": "net-a", "reason": "malformed"}) == 1
    assert get("mycelium_spore_members", {"network": "net-a", "state": "alive"}) == 1
    assert get("mycelium_spore_sent_bytes_total", {"network": "net-a"}) == core.stats.bytes_sent > 0
