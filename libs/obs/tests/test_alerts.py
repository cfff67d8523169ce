"""Alert rules against a registry, driven by a virtual clock: pending, firing, resolved."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

import obs


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> obs.Metrics:
    return obs.Metrics("dram", registry=registry)


LAG = "mycelium_dram_replication_lag_seconds"


def lag_rule(**overrides: object) -> obs.AlertRule:
    fields: dict[str, object] = {
        "name": "ReplicationLagging",
        "metric": LAG,
        "comparison": ">",
        "threshold": 2.0,
        "for_seconds": 30.0,
        **overrides,
    }
    return obs.AlertRule(**fields)  # type: ignore[arg-type]


def test_an_alert_fires_only_after_the_for_duration(
    registry: CollectorRegistry, metrics: obs.Metrics
) -> None:
    lag = metrics.gauge("replication_lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(registry, [lag_rule()])
    lag.set(5.0)
    assert ev.evaluate(100.0) == []
    assert [a.state for a in ev.active()] == [obs.AlertState.PENDING]
    assert ev.evaluate(129.9) == []
    (fired,) = ev.evaluate(130.0)
    assert fired.state is obs.AlertState.FIRING
    assert fired.rule == "ReplicationLagging"
    assert fired.value == 5.0
    assert fired.active_since == 100.0
    assert fired.at == 130.0
    # Still breaching: no repeated event.
    assert ev.evaluate(200.0) == []
    assert [a.state for a in ev.active()] == [obs.AlertState.FIRING]


def test_a_firing_alert_resolves_when_the_value_recovers(
    registry: CollectorRegistry, metrics: obs.Metrics
) -> None:
    lag = metrics.gauge("replication_lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(registry, [lag_rule(for_seconds=0)])
    lag.set(3.0)
    (fired,) = ev.evaluate(1.0)
    assert fired.state is obs.AlertState.FIRING
    lag.set(1.0)
    (resolved,) = ev.evaluate(2.0)
    assert resolved.state is obs.AlertState.RESOLVED
    assert resolved.active_since == 1.0
    assert ev.active() == []


def test_a_pending_alert_that_recovers_is_forgotten_silently(
    registry: CollectorRegistry, metrics: obs.Metrics
) -> None:
    lag = metrics.gauge("replication_lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(registry, [lag_rule()])
    lag.set(5.0)
    ev.evaluate(0.0)
    lag.set(0.0)
    assert ev.evaluate(10.0) == []
    lag.set(5.0)
    assert ev.evaluate(20.0) == []
    # The pending timer restarted at 20, so 45 is too early and 50 fires.
    assert ev.evaluate(45.0) == []
    assert [e.state for e in ev.evaluate(50.0)] == [obs.AlertState.FIRING]


def test_each_labelled_series_alerts_on_its_own(registry: CollectorRegistry, metrics: obs.Metrics) -> None:
    peers = metrics.gauge("peers", "Peers", unit="count", labels=("node",))
    rule = obs.AlertRule("FewPeers", "mycelium_dram_peers_count", "<", 2, matchers={"node": "n1"})
    rule_any = obs.AlertRule(
        "FewPeersAny", "mycelium_dram_peers_count", "<", 2, matchers=[obs.LabelMatcher("node", "n.*", "=~")]
    )
    ev = obs.AlertEvaluator(registry, [rule, rule_any])
    peers.labels(node="n1").set(1)
    peers.labels(node="n2").set(0)
    peers.labels(node="x9").set(0)
    events = ev.evaluate(0.0)
    fired = sorted((e.rule, dict(e.labels)["node"]) for e in events)
    assert fired == [("FewPeers", "n1"), ("FewPeersAny", "n1"), ("FewPeersAny", "n2")]
    peers.labels(node="n2").set(5)
    (resolved,) = ev.evaluate(1.0)
    assert (resolved.rule, resolved.labels, resolved.state) == (
        "FewPeersAny",
        (("node", "n2"),),
        obs.AlertState.RESOLVED,
    )


def test_counters_are_read_by_their_total_name(registry: CollectorRegistry) -> None:
    refused = obs.Metrics("meshnet", registry=registry).counter("refused", "Refused", labels=("reason",))
    rule = obs.AlertRule("Refusing", "mycelium_meshnet_refused_total", ">=", 3)
    ev = obs.AlertEvaluator(registry, [rule])
    refused.labels(reason="a").inc(2)
    assert ev.evaluate(0.0) == []
    refused.labels(reason="a").inc()
    (event,) = ev.evaluate(1.0)
    assert event.value == 3.0


@pytest.mark.parametrize(
    ("comparison", "value", "fires"),
    [
        (">", 2.0, False),
        (">=", 2.0, True),
        ("<", 1.9, True),
        ("<=", 2.1, False),
        ("==", 2.0, True),
        ("!=", 2.0, False),
    ],
)
def test_every_comparison(
    registry: CollectorRegistry, metrics: obs.Metrics, comparison: str, value: float, fires: bool
) -> None:
    metrics.gauge("replication_lag", "Lag", unit="seconds").set(value)
    ev = obs.AlertEvaluator(registry, [lag_rule(comparison=comparison, for_seconds=0)])
    assert bool(ev.evaluate(0.0)) is fires


def test_nan_never_fires(registry: CollectorRegistry, metrics: obs.Metrics) -> None:
    metrics.gauge("replication_lag", "Lag", unit="seconds").set(math.nan)
    ev = obs.AlertEvaluator(registry, [lag_rule(comparison="!=", for_seconds=0)])
    assert ev.evaluate(0.0) == []


def test_unknown_metric_is_rejected_when_the_evaluator_is_built(registry: CollectorRegistry) -> None:
    with pytest.raises(obs.UnknownMetricError, match="ReplicationLagging") as info:
        obs.AlertEvaluator(registry, [lag_rule()])
    assert info.value.field == "metric"


def test_duplicate_rule_names_are_rejected(registry: CollectorRegistry, metrics: obs.Metrics) -> None:
    metrics.gauge("replication_lag", "Lag", unit="seconds")
    with pytest.raises(obs.AlertRuleError, match="unique"):
        obs.AlertEvaluator(registry, [lag_rule(), lag_rule()])


def test_time_must_not_go_backwards(registry: CollectorRegistry, metrics: obs.Metrics) -> None:
    metrics.gauge("replication_lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(registry, [lag_rule()])
    ev.evaluate(10.0)
    with pytest.raises(obs.ObsError) as info:
        ev.evaluate(9.0)
    assert info.value.field == "now"
    with pytest.raises(obs.ObsError):
        ev.evaluate(math.inf)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "has space"}, "name"),
        ({"metric": "bad-name"}, "metric"),
        ({"comparison": "=>"}, "comparison"),
        ({"threshold": math.nan}, "threshold"),
        ({"threshold": "2"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"for_seconds": -1}, "for_seconds"),
        ({"for_seconds": "5 minutes"}, "for_seconds"),
        ({"matchers": {"bad-label": "x"}}, "matchers"),
        ({"matchers": [obs.LabelMatcher("a", "x"), "a=b"]}, "matchers"),
        ({"severity": "panic"}, "severity"),
    ],
)
def test_bad_rules_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(obs.AlertRuleError) as info:
        lag_rule(**overrides)
    assert info.value.field == field


def test_bad_matchers_name_the_field() -> None:
    with pytest.raises(obs.AlertRuleError, match="regex") as info:
        obs.LabelMatcher("node", "(", "=~")
    assert info.value.field == "matchers"
    with pytest.raises(obs.AlertRuleError, match="operator"):
        obs.LabelMatcher("node", "x", "~=")


def test_rules_load_from_configuration_with_durations() -> None:
    rule = obs.AlertRule.from_dict(
        {
            "name": "Lag",
            "metric": LAG,
            "comparison": ">",
            "threshold": 2,
            "for": "5m",
            "matchers": {"node": "a"},
        }
    )
    assert rule.for_seconds == 300.0
    assert rule.matchers == (obs.LabelMatcher("node", "a"),)
    assert (
        obs.AlertRule.from_dict(
            {"name": "L", "metric": LAG, "comparison": "<", "threshold": 1, "for": "250ms"}
        ).for_seconds
        == 0.25
    )
    with pytest.raises(obs.AlertRuleError) as info:
        obs.AlertRule.from_dict(
            {"name": "Lag", "metric": LAG, "comparison": ">", "threshold": 2, "fro": "5m"}
        )
    assert info.value.field == "fro"
    with pytest.raises(obs.AlertRuleError) as info2:
        obs.AlertRule.from_dict({"name": "Lag", "metric": LAG, "threshold": 2})
    assert info2.value.field == "comparison"


def test_a_metric_that_disappears_resolves_its_alerts(
    registry: CollectorRegistry, metrics: obs.Metrics
) -> None:
    peers = metrics.gauge("peers", "Peers", unit="count", labels=("node",))
    ev = obs.AlertEvaluator(registry, [obs.AlertRule("FewPeers", "mycelium_dram_peers_count", "<", 2)])
    peers.labels(node="n1").set(0)
    assert len(ev.evaluate(0.0)) == 1
    peers.remove("n1")
    (event,) = ev.evaluate(1.0)
    assert event.state is obs.AlertState.RESOLVED


def test_event_to_dict_is_json_ready(registry: CollectorRegistry, metrics: obs.Metrics) -> None:
    import json

    metrics.gauge("replication_lag", "Lag", unit="seconds").set(9)
    (event,) = obs.AlertEvaluator(registry, [lag_rule(for_seconds=0, summary="too slow")]).evaluate(5.0)
    data = json.loads(json.dumps(event.to_dict()))
    assert data["state"] == "firing"
    assert data["summary"] == "too slow"
    assert data["value"] == 9.0
