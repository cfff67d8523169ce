"""Trust ledger: rewards, slashing, jail, bans, decay; determinism and bounds as properties."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

import bftconsensus as b

NODES = [f"n{i}" for i in range(6)]
DAY = 86_400_000


def verdict(time_ms: int, agreeing=(), dissenting=(), evidence=()) -> b.Verdict:
    return b.Verdict(
        op_id=f"op@{time_ms}",
        function="f",
        input=b"",
        accepted=bool(agreeing),
        result=b"r" if agreeing else None,
        agreeing=tuple(agreeing),
        dissenting=tuple(dissenting),
        evidence=tuple(evidence),
        attempts=1,
        time_ms=time_ms,
        coordinator="c",
        revealed={},
        frame=b"",
    )


def ev(kind: b.EvidenceKind, who: str) -> b.Evidence:
    return b.Evidence(kind, who, 0)


verdicts = st.lists(
    st.builds(
        lambda t, a, d, e: verdict(t, sorted(set(a) - set(d)), sorted(set(d)), [ev(k, w) for k, w in e]),
        st.integers(0, 30 * DAY),
        st.lists(st.sampled_from(NODES), max_size=4),
        st.lists(st.sampled_from(NODES), max_size=2),
        st.lists(st.tuples(st.sampled_from(list(b.EvidenceKind)), st.sampled_from(NODES)), max_size=2),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(verdicts)
def test_same_log_gives_the_same_ledger_on_every_node(log) -> None:
    a = b.TrustLedger.replay(log)
    c = b.TrustLedger.replay(list(log))
    assert a.fingerprint() == c.fingerprint()
    assert a.ranking() == c.ranking()


@settings(max_examples=150, deadline=None)
@given(verdicts)
def test_trust_stays_within_bounds(log) -> None:
    ledger = b.TrustLedger()
    for v in log:
        ledger.apply(v)
        for n in NODES:
            assert 0 <= ledger.trust(n) <= b._trust.PPM


@settings(max_examples=100, deadline=None)
@given(verdicts, st.integers(1, 60 * DAY))
def test_without_new_verdicts_trust_only_moves_toward_neutral(log, later) -> None:
    ledger = b.TrustLedger.replay(log)
    neutral = ledger.params.neutral
    for n in NODES:
        before = abs(ledger.trust(n) - neutral)
        after = abs(ledger.trust(n, ledger._now + later) - neutral)
        assert after <= before


def test_decay_halves_the_gap_every_half_life() -> None:
    ledger = b.TrustLedger()
    for i in range(50):
        ledger.apply(verdict(i, agreeing=["n0"]))
    gap = ledger.trust("n0") - ledger.params.neutral
    assert gap > 0
    assert abs((ledger.trust("n0", ledger._now + 7 * DAY) - ledger.params.neutral) - gap // 2) <= 1


def test_agreement_raises_and_dissent_lowers() -> None:
    ledger = b.TrustLedger()
    ledger.apply(verdict(0, agreeing=["n0"], dissenting=["n1"]))
    assert ledger.trust("n0") > ledger.params.neutral > ledger.trust("n1")
    assert ledger.trust("n1") == ledger.params.neutral * 95 // 100


def test_provable_fault_bans_for_good() -> None:
    ledger = b.TrustLedger()
    ledger.apply(verdict(0, agreeing=["n0", "n1", "n2"], evidence=[ev(b.EvidenceKind.EQUIVOCATION, "n3")]))
    assert ledger.status("n3") is b.NodeStatus.BANNED
    assert ledger.status("n3", 365 * DAY) is b.NodeStatus.BANNED
    assert "n3" not in dict(ledger.eligible(NODES))


def test_correlated_provable_faults_are_slashed_proportionally() -> None:
    alone = b.TrustLedger()
    alone.apply(
        verdict(0, agreeing=["n0", "n1", "n2", "n4", "n5"], evidence=[ev(b.EvidenceKind.COPIED_COMMIT, "n3")])
    )
    many = b.TrustLedger()
    many.apply(
        verdict(
            0,
            agreeing=["n0", "n1", "n2"],
            evidence=[ev(b.EvidenceKind.COPIED_COMMIT, n) for n in ("n3", "n4", "n5")],
        )
    )
    assert many.trust("n3") < alone.trust("n3")
    assert many.trust("n3") == 0  # 3 x half the nodes > 100%


def test_falling_below_threshold_jails_then_the_node_earns_its_way_back() -> None:
    params = b.TrustParams(slash_dissent=400_000)
    ledger = b.TrustLedger(params)
    t = 0
    while ledger.status("n1", t) is b.NodeStatus.ACTIVE:
        t += 1000
        ledger.apply(verdict(t, agreeing=["n0"], dissenting=["n1"]))
        assert t < 100_000
    assert ledger.status("n1") is b.NodeStatus.JAILED
    assert "n1" not in dict(ledger.eligible(NODES))
    # Decay toward neutral lifts it above the threshold after the jail ends.
    assert ledger.status("n1", t + 14 * DAY) is b.NodeStatus.ACTIVE


def test_repeated_jails_ban() -> None:
    params = b.TrustParams(slash_dissent=PPM_HALF, jail_duration_ms=1000)
    ledger = b.TrustLedger(params)
    t = 0
    for _ in range(200):
        t += 2000
        ledger.apply(verdict(t, agreeing=["n0"], dissenting=["n1"]))
        if ledger.status("n1") is b.NodeStatus.BANNED:
            break
    assert ledger.status("n1") is b.NodeStatus.BANNED


PPM_HALF = 500_000


def test_missing_half_the_window_jails_for_downtime() -> None:
    params = b.TrustParams(downtime_window=10, slash_downtime=0)
    ledger = b.TrustLedger(params)
    for i in range(10):
        evidence = [ev(b.EvidenceKind.MISSING_REVEAL, "n1")] if i % 3 else []
        ledger.apply(verdict(i, agreeing=["n0"] + ([] if evidence else ["n1"]), evidence=evidence))
    assert ledger.status("n1") is b.NodeStatus.JAILED
    assert ledger.status("n1", 9 + 600_001) is b.NodeStatus.ACTIVE


def test_bad_params_name_the_field() -> None:
    import pytest

    with pytest.raises(b.ConfigError, match="jail_threshold"):
        b.TrustParams(jail_threshold=2_000_000)


def test_ledger_from_real_verdicts_excludes_the_faulty_executor(world, keys, functions) -> None:
    class Wrong(b.Executor):
        def compute(self, function: str, data: bytes) -> bytes:
            return b"bad"

    exs = [(Wrong if i == 0 else b.Executor)(world[f"e{i}"], keys, functions) for i in range(5)]
    ledger = b.TrustLedger(b.TrustParams(slash_dissent=300_000))
    for i in range(30):
        op = b.sign_operation(world["client"], f"op{i}", "sha256", bytes([i]))
        weights = dict(ledger.eligible([f"e{j}" for j in range(5)]))
        v = b.execute_in_process(
            world["coord"],
            keys,
            op,
            [e for e in exs if e.signer.node_id in weights],
            beacon=b"x",
            weights=weights,
        )
        ledger.apply(b.verify_verdict(v.frame, keys))
    assert ledger.status("e0") is not b.NodeStatus.ACTIVE
    assert ledger.ranking()[-1][0] == "e0"
