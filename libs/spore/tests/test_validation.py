"""Record validation: each tampering is rejected, counted by reason, and quarantines the sender."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

import spore


@pytest.fixture
def validator(trust: spore.NetworkTrust, clock: Callable[[], float]) -> spore.RecordValidator:
    return spore.RecordValidator(trust, clock)


def test_a_good_record_passes(
    validator: spore.RecordValidator, make_record: Callable[..., spore.SporeRecord]
) -> None:
    validator.check(make_record("a"), sender="peer")
    assert not validator.rejected
    assert not validator.is_quarantined("peer")


def _forged(make_record: Callable[..., spore.SporeRecord]) -> spore.SporeRecord:
    return attrs.evolve(make_record("a"), addresses=("6.6.6.6:1",))


def _expired(make_record: Callable[..., spore.SporeRecord]) -> spore.SporeRecord:
    return make_record("a", ttl=-1)


def _wrong_network(make_record: Callable[..., spore.SporeRecord]) -> spore.SporeRecord:
    return make_record("a", network_id="net-b")


def _impostor(make_record: Callable[..., spore.SporeRecord]) -> spore.SporeRecord:
    other = make_record("b")
    return attrs.evolve(make_record("a"), node_id=other.node_id)


def _uncountersigned(make_record: Callable[..., spore.SporeRecord]) -> spore.SporeRecord:
    r = make_record("s", role=spore.Role.SCLEROTIUM)
    return attrs.evolve(r, network_signature=b"")


@pytest.mark.parametrize(
    ("make_bad", "reason"),
    [
        (_forged, "bad_signature"),
        (_expired, "expired"),
        (_wrong_network, "wrong_network"),
        (_impostor, "node_id_mismatch"),
        (_uncountersigned, "bad_network_signature"),
    ],
)
def test_tampered_records_are_rejected_counted_and_quarantine_the_sender(
    validator: spore.RecordValidator,
    make_record: Callable[..., spore.SporeRecord],
    make_bad: Callable[..., spore.SporeRecord],
    reason: str,
) -> None:
    with pytest.raises(spore.RecordRejectedError) as info:
        validator.check(make_bad(make_record), sender="mallory")
    assert info.value.reason == reason
    assert validator.rejected[reason] == 1
    assert validator.is_quarantined("mallory")


def test_a_countersigned_sclerotium_passes(
    validator: spore.RecordValidator, make_record: Callable[..., spore.SporeRecord]
) -> None:
    validator.check(make_record("s", role=spore.Role.SCLEROTIUM))


def test_a_node_replaying_its_own_old_incarnation_is_quarantined(
    validator: spore.RecordValidator, make_record: Callable[..., spore.SporeRecord]
) -> None:
    validator.accept(make_record("a", incarnation=5))
    old = make_record("a", incarnation=4)
    with pytest.raises(spore.RecordRejectedError, match="stale_incarnation"):
        validator.check(old, sender=old.node_id)
    assert validator.is_quarantined(old.node_id)


def test_a_relayed_stale_incarnation_is_counted_but_is_gossip_lag_not_tampering(
    validator: spore.RecordValidator, make_record: Callable[..., spore.SporeRecord]
) -> None:
    validator.accept(make_record("a", incarnation=5))
    with pytest.raises(spore.RecordRejectedError):
        validator.check(make_record("a", incarnation=4), sender="relay")
    assert validator.rejected["stale_incarnation"] == 1
    assert not validator.is_quarantined("relay")


def test_confirmation_lifts_the_quarantine(
    validator: spore.RecordValidator, make_record: Callable[..., spore.SporeRecord]
) -> None:
    with pytest.raises(spore.RecordRejectedError):
        validator.check(_forged(make_record), sender="peer")
    assert validator.confirm("peer")
    assert not validator.is_quarantined("peer")


def test_the_primary_oracle_can_refuse_and_unknown_means_fallback(
    trust: spore.NetworkTrust, clock: Callable[[], float], make_record: Callable[..., spore.SporeRecord]
) -> None:
    class Oracle:
        verdict: bool | None = False

        def admits(self, record: spore.SporeRecord) -> bool | None:
            return self.verdict

    oracle = Oracle()
    v = spore.RecordValidator(trust, clock, oracle)
    with pytest.raises(spore.RecordRejectedError, match="not_in_primary"):
        v.check(make_record("a"), sender="p")
    assert not v.is_quarantined("p")
    oracle.verdict = None  # Primary unreachable: validated Latent data is the fallback
    v.check(make_record("a"), sender="p")


def test_network_trust_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="network_public_key must be 32"):
        spore.NetworkTrust("n", b"123")
