"""Metric declaration: naming convention, idempotent re-declaration, clear errors on clashes."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

import obs


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def exposed(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_counter_follows_the_naming_convention_and_gets_total(registry: CollectorRegistry) -> None:
    m = obs.Metrics("meshnet", registry=registry)
    c = m.counter("handshakes_refused", "Handshakes refused, by reason", labels=("reason",))
    assert isinstance(c, Counter)
    c.labels(reason="wrong_network").inc()
    c.labels(reason="wrong_network").inc(2)
    value = registry.get_sample_value(
        "mycelium_meshnet_handshakes_refused_total", {"reason": "wrong_network"}
    )
    assert value == 3.0
    assert "# TYPE mycelium_meshnet_handshakes_refused_total counter" in exposed(registry)


def test_unit_is_appended_once(registry: CollectorRegistry) -> None:
    m = obs.Metrics("meshnet", registry=registry)
    g = m.gauge("peers_connected", "Live peer connections", unit="count")
    g.set(4)
    assert registry.get_sample_value("mycelium_meshnet_peers_connected_count") == 4.0
    m.gauge("bytes_buffered_bytes", "Buffered", unit="bytes").set(1)
    assert registry.get_sample_value("mycelium_meshnet_bytes_buffered_bytes") == 1.0
    assert m.name_of("rpc_latency", "seconds") == "mycelium_meshnet_rpc_latency_seconds"


def test_histogram_observes_into_its_buckets(registry: CollectorRegistry) -> None:
    h = obs.Metrics("spore", registry=registry).histogram(
        "rpc_latency", "RPC latency", unit="seconds", buckets=(0.1, 1.0)
    )
    assert isinstance(h, Histogram)
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    name = "mycelium_spore_rpc_latency_seconds"
    assert registry.get_sample_value(f"{name}_bucket", {"le": "0.1"}) == 1.0
    assert registry.get_sample_value(f"{name}_bucket", {"le": "1.0"}) == 2.0
    assert registry.get_sample_value(f"{name}_bucket", {"le": "+Inf"}) == 3.0
    assert registry.get_sample_value(f"{name}_count") == 3.0


def test_redeclaring_the_same_metric_returns_the_same_collector(registry: CollectorRegistry) -> None:
    first = obs.Metrics("meshnet", registry=registry).gauge("peers_connected", "Live", unit="count")
    second = obs.Metrics("meshnet", registry=registry).gauge("peers_connected", "Live", unit="count")
    assert first is second
    first.inc()
    second.inc()
    assert registry.get_sample_value("mycelium_meshnet_peers_connected_count") == 2.0


def test_separate_registries_hold_separate_metrics() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    ga = obs.Metrics("dram", registry=a).gauge("lag", "Lag", unit="seconds")
    gb = obs.Metrics("dram", registry=b).gauge("lag", "Lag", unit="seconds")
    assert ga is not gb
    ga.set(1)
    assert b.get_sample_value("mycelium_dram_lag_seconds") == 0.0


def test_same_name_with_another_type_is_a_clash(registry: CollectorRegistry) -> None:
    m = obs.Metrics("meshnet", registry=registry)
    m.gauge("peers", "Peers")
    with pytest.raises(obs.MetricClashError, match="already declared as a gauge") as info:
        m.counter("peers", "Peers")
    assert info.value.field == "name"


def test_same_name_with_other_labels_is_a_clash(registry: CollectorRegistry) -> None:
    m = obs.Metrics("meshnet", registry=registry)
    m.counter("frames", "Frames", labels=("kind",))
    with pytest.raises(obs.MetricClashError, match="labels"):
        m.counter("frames", "Frames", labels=("kind", "peer"))


def test_histogram_with_other_buckets_is_a_clash(registry: CollectorRegistry) -> None:
    m = obs.Metrics("meshnet", registry=registry)
    m.histogram("latency", "L", unit="seconds", buckets=(1.0, 2.0))
    assert m.histogram("latency", "L", unit="seconds", buckets=(1.0, 2.0, math.inf)) is not None
    with pytest.raises(obs.MetricClashError, match="buckets"):
        m.histogram("latency", "L", unit="seconds", buckets=(1.0, 3.0))


def test_a_name_registered_outside_obs_is_reported_as_a_clash(registry: CollectorRegistry) -> None:
    Gauge("mycelium_meshnet_peers", "registered directly", registry=registry)
    with pytest.raises(obs.MetricClashError, match="cannot be registered"):
        obs.Metrics("meshnet", registry=registry).gauge("peers", "Peers")


@pytest.mark.parametrize("component", ["", "Meshnet", "1mesh", "mesh-net", "mesh__net", "mesh_", None])
def test_bad_component_is_rejected_naming_the_field(component: object) -> None:
    with pytest.raises(obs.MetricError) as info:
        obs.Metrics(component)  # type: ignore[arg-type]
    assert info.value.field == "component"
    assert "[a-z][a-z0-9_]*" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Peers"}, "name"),
        ({"name": "mycelium_peers"}, "name"),
        ({"name": "peers", "unit": "Seconds"}, "unit"),
        ({"name": "peers", "labels": ("bad-label",)}, "labels"),
        ({"name": "peers", "labels": ("__internal",)}, "labels"),
        ({"name": "peers", "labels": ("a", "a")}, "labels"),
        ({"name": "peers", "labels": "reason"}, "labels"),
        ({"name": "peers", "documentation": "  "}, "documentation"),
    ],
)
def test_bad_declarations_name_the_field(
    registry: CollectorRegistry, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"documentation": "help", **kwargs}
    with pytest.raises(obs.MetricError) as info:
        obs.Metrics("meshnet", registry=registry).gauge(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_counter_name_must_not_carry_total(registry: CollectorRegistry) -> None:
    with pytest.raises(obs.MetricError, match="_total"):
        obs.Metrics("meshnet", registry=registry).counter("frames_total", "Frames")


def test_histogram_rejects_reserved_label_and_bad_buckets(registry: CollectorRegistry) -> None:
    m = obs.Metrics("meshnet", registry=registry)
    with pytest.raises(obs.MetricError, match="reserved"):
        m.histogram("latency", "L", labels=("le",))
    with pytest.raises(obs.MetricError, match="increasing") as info:
        m.histogram("latency", "L", buckets=(2.0, 1.0))
    assert info.value.field == "buckets"
    with pytest.raises(obs.MetricError, match="buckets"):
        m.histogram("latency", "L", buckets=())


def test_registry_must_be_a_collector_registry() -> None:
    with pytest.raises(obs.MetricError) as info:
        obs.Metrics("meshnet", registry={})  # type: ignore[arg-type]
    assert info.value.field == "registry"


def test_errors_are_rooted_at_obs_error() -> None:
    with pytest.raises(obs.ObsError):
        obs.Metrics("Bad")


def test_errors_survive_pickling() -> None:
    import pickle

    err = obs.MetricClashError("name", "already declared")
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 (our own bytes)
    assert type(copy) is obs.MetricClashError
    assert copy.field == "name"
    assert str(copy) == "name: already declared"
