"""The bounded history store: ring buffer, rollups, series cap, forecasts from recorded data."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

import obs

DISK = "mycelium_blockstore_disk_used_bytes"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_the_raw_ring_keeps_only_the_newest_samples() -> None:
    h = obs.SeriesHistory(raw_capacity=3, tiers=())
    for t in range(10):
        h.add(float(t), float(t * 10))
    assert h.raw() == [(7.0, 70.0), (8.0, 80.0), (9.0, 90.0)]
    assert len(h) == 3
    assert h.raw(since=8.5) == [(9.0, 90.0)]


def test_rollups_hold_min_max_mean_per_bucket() -> None:
    h = obs.SeriesHistory(raw_capacity=2, tiers=(obs.RollupTier(10.0, 2),))
    for t, v in [(0, 1.0), (5, 3.0), (9.9, 2.0), (10, 7.0), (15, 9.0), (25, 4.0)]:
        h.add(float(t), v)
    # Capacity 2 closed buckets plus the open one; nothing older than that.
    assert h.rollups(10.0) == [
        obs.Rollup(0.0, 3, 1.0, 3.0, 2.0, pytest.approx(14.9 / 3)),
        obs.Rollup(10.0, 2, 7.0, 9.0, 8.0, 12.5),
        obs.Rollup(20.0, 1, 4.0, 4.0, 4.0, 25.0),
    ]
    for t in (35, 45):
        h.add(float(t), 0.0)
    assert [r.start for r in h.rollups(10.0)] == [10.0, 20.0, 30.0, 40.0][-3:]


def test_the_store_is_bounded_however_long_it_runs() -> None:
    h = obs.SeriesHistory(raw_capacity=5, tiers=(obs.RollupTier(10.0, 4), obs.RollupTier(100.0, 2)))
    for t in range(5000):
        h.add(float(t), 1.0)
    assert len(h.raw()) == 5
    assert len(h.rollups(10.0)) == 5  # 4 closed + the open one
    assert len(h.rollups(100.0)) == 3


def test_series_rejects_bad_input_naming_the_field() -> None:
    h = obs.SeriesHistory(raw_capacity=4, tiers=())
    h.add(5.0, 1.0)
    with pytest.raises(obs.HistoryError) as info:
        h.add(4.0, 1.0)
    assert info.value.field == "t"
    with pytest.raises(obs.HistoryError) as info2:
        h.add(6.0, float("nan"))
    assert info2.value.field == "value"
    with pytest.raises(obs.HistoryError) as info3:
        h.rollups(60.0)
    assert info3.value.field == "resolution"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"raw_capacity": 1}, "raw_capacity"),
        ({"tiers": [obs.RollupTier(60.0, 5), obs.RollupTier(60.0, 9)]}, "tiers"),
        ({"tiers": [(60.0, 5)]}, "tiers"),
    ],
)
def test_bad_store_shapes_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(obs.HistoryError) as info:
        obs.SeriesHistory(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(("args", "field"), [((0.0, 5), "resolution"), ((60.0, 0), "capacity")])
def test_bad_tiers_name_the_field(args: tuple[float, int], field: str) -> None:
    with pytest.raises(obs.HistoryError) as info:
        obs.RollupTier(*args)
    assert info.value.field == field


def test_metric_history_records_every_series_and_forecasts(registry: CollectorRegistry) -> None:
    used = obs.Metrics("blockstore", registry=registry).gauge(
        "disk_used", "Used", unit="bytes", labels=("node",)
    )
    history = obs.MetricHistory(registry, [DISK], raw_capacity=100, tiers=(obs.RollupTier(600.0, 10),))
    for minute in range(30):
        used.labels(node="a").set(1000 + 10 * minute)  # +10 bytes/min
        used.labels(node="b").set(5000 - minute)  # shrinking
        assert history.record(minute * 60.0) == 2
    assert history.series_keys() == [(DISK, {"node": "a"}), (DISK, {"node": "b"})]
    when = history.forecast(DISK, 2000, labels={"node": "a"})
    assert when == pytest.approx(100 * 60.0)
    assert history.forecast(DISK, 9000, labels={"node": "b"}) is None
    # From the 10-minute rollups (mean value at mean time per bucket) the answer is the same line.
    assert history.forecast(DISK, 2000, labels={"node": "a"}, resolution=600.0) == pytest.approx(6000.0)


def test_counters_can_be_tracked_by_their_total_name(registry: CollectorRegistry) -> None:
    sent = obs.Metrics("dram", registry=registry).counter("pages_sent", "Pages")
    history = obs.MetricHistory(registry, ["mycelium_dram_pages_sent_total"], tiers=())
    for t in range(5):
        sent.inc(100)
        history.record(float(t))
    assert [v for _, v in history.series("mycelium_dram_pages_sent_total").raw()] == [100, 200, 300, 400, 500]


def test_the_series_cap_drops_new_series_and_counts_them(registry: CollectorRegistry) -> None:
    used = obs.Metrics("blockstore", registry=registry).gauge(
        "disk_used", "Used", unit="bytes", labels=("node",)
    )
    history = obs.MetricHistory(registry, [DISK], max_series=2, tiers=())
    for node in "abcd":
        used.labels(node=node).set(1)
    assert history.record(0.0) == 2
    assert history.dropped_series == 2
    assert len(history.series_keys()) == 2


def test_nan_values_are_not_recorded(registry: CollectorRegistry) -> None:
    g = obs.Metrics("blockstore", registry=registry).gauge("disk_used", "Used", unit="bytes")
    history = obs.MetricHistory(registry, [DISK], tiers=())
    g.set(float("nan"))
    assert history.record(0.0) == 0


def test_unknown_metrics_and_series_are_typed_errors(registry: CollectorRegistry) -> None:
    with pytest.raises(obs.UnknownMetricError) as info:
        obs.MetricHistory(registry, ["mycelium_nothing_here"])
    assert info.value.field == "metrics"
    obs.Metrics("blockstore", registry=registry).gauge("disk_used", "Used", unit="bytes", labels=("node",))
    history = obs.MetricHistory(registry, [DISK])
    with pytest.raises(obs.UnknownMetricError):
        history.series("mycelium_other")
    with pytest.raises(obs.HistoryError) as info2:
        history.series(DISK, {"node": "zz"})
    assert info2.value.field == "labels"
    with pytest.raises(obs.HistoryError) as info3:
        obs.MetricHistory(registry, DISK)  # type: ignore[arg-type]
    assert info3.value.field == "metrics"


def test_record_time_must_not_go_backwards(registry: CollectorRegistry) -> None:
    obs.Metrics("blockstore", registry=registry).gauge("disk_used", "Used", unit="bytes")
    history = obs.MetricHistory(registry, [DISK])
    history.record(10.0)
    with pytest.raises(obs.HistoryError) as info:
        history.record(9.0)
    assert info.value.field == "now"


@pytest.mark.anyio
async def test_the_recorder_loop_samples_on_its_clock(registry: CollectorRegistry) -> None:
    g = obs.Metrics("blockstore", registry=registry).gauge("disk_used", "Used", unit="bytes")
    history = obs.MetricHistory(registry, [DISK], tiers=())
    ticks = iter(range(100))

    def clock() -> float:
        t = next(ticks)
        g.set(t * 2)
        return float(t)

    await obs.run_history_recorder(history, interval=0, clock=clock, iterations=5)
    assert history.series(DISK).raw() == [(0.0, 0.0), (1.0, 2.0), (2.0, 4.0), (3.0, 6.0), (4.0, 8.0)]
    assert history.forecast(DISK, 20.0) == pytest.approx(10.0)
