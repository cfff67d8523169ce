"""A bounded in-memory time-series store for chosen metrics, with downsampled rollups.

Each series keeps a raw ring buffer of its last ``raw_capacity`` samples plus, per rollup tier,
a ring of fixed-width buckets holding count/min/max/mean. Memory per series is therefore fixed
(``raw_capacity + sum(tier capacities)`` rows of 8-byte floats, about 75 KiB with the defaults), and the number of series is capped by
``max_series``: label explosions cannot grow it without bound. Series beyond the cap are not
stored and counted in `MetricHistory.dropped_series` (and logged once), never silently lost.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence

import anyio
import attrs
from prometheus_client import CollectorRegistry

from obs._errors import HistoryError, ObsError, UnknownMetricError
from obs._forecast import forecast_crossing
from obs._logging import get_logger
from obs._query import known_metric_names, read_series

__all__ = ["DEFAULT_TIERS", "MetricHistory", "Rollup", "RollupTier", "SeriesHistory", "run_history_recorder"]


def _positive_number(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise HistoryError(attr.name, f"expected a positive finite number, got {value!r}")


def _positive_int(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HistoryError(attr.name, f"expected a positive integer, got {value!r}")


@attrs.frozen
class RollupTier:
    """Buckets of ``resolution`` seconds, the last ``capacity`` of them kept."""

    resolution: float = attrs.field(validator=_positive_number)
    capacity: int = attrs.field(validator=_positive_int)


# 1-minute buckets for 12 hours and 1-hour buckets for 30 days: the two views capacity planning
# looks at ("is it climbing right now", "how fast does it grow per week").
DEFAULT_TIERS: tuple[RollupTier, ...] = (RollupTier(60.0, 720), RollupTier(3600.0, 720))


@attrs.frozen
class Rollup:
    """One downsampled bucket ``[start, start + resolution)``."""

    start: float
    count: int
    min: float
    max: float
    mean: float
    mean_time: float


class _Ring:
    """A fixed-capacity ring of rows of floats, stored column-wise in `array('d')` (8 bytes a value).

    Grows lazily up to ``capacity`` and then overwrites the oldest row, so a short-lived series
    costs little and a long-lived one never more than ``capacity`` rows.
    """

    __slots__ = ("_head", "capacity", "columns")

    def __init__(self, capacity: int, width: int) -> None:
        self.capacity = capacity
        self.columns = [array("d") for _ in range(width)]
        self._head = 0  # index of the oldest row once the ring is full

    def __len__(self) -> int:
        return len(self.columns[0])

    def append(self, row: tuple[float, ...]) -> None:
        if len(self) < self.capacity:
            for column, value in zip(self.columns, row, strict=True):
                column.append(value)
            return
        for column, value in zip(self.columns, row, strict=True):
            column[self._head] = value
        self._head = (self._head + 1) % self.capacity

    def rows(self) -> list[tuple[float, ...]]:
        """Oldest first."""
        n = len(self)
        order = [(self._head + i) % n for i in range(n)] if n == self.capacity else range(n)
        return [tuple(column[i] for column in self.columns) for i in order]


class _Tier:
    __slots__ = ("closed", "current", "resolution")

    def __init__(self, tier: RollupTier) -> None:
        self.resolution = tier.resolution
        # Per bucket: (start, count, min, max, sum, sum of times).
        self.closed = _Ring(tier.capacity, 6)
        self.current: tuple[float, float, float, float, float, float] | None = None

    def add(self, t: float, v: float) -> None:
        start = math.floor(t / self.resolution) * self.resolution
        cur = self.current
        if cur is not None and cur[0] == start:
            self.current = (start, cur[1] + 1, min(cur[2], v), max(cur[3], v), cur[4] + v, cur[5] + t)
            return
        if cur is not None:
            self.closed.append(cur)
        self.current = (start, 1, v, v, v, t)

    def rollups(self) -> list[Rollup]:
        buckets = [*self.closed.rows(), *([self.current] if self.current is not None else [])]
        return [Rollup(s, int(c), lo, hi, total / c, t_total / c) for s, c, lo, hi, total, t_total in buckets]


class SeriesHistory:
    """The bounded history of one series: raw ring buffer plus rollup tiers."""

    def __init__(self, raw_capacity: int = 360, tiers: Sequence[RollupTier] = DEFAULT_TIERS) -> None:
        if isinstance(raw_capacity, bool) or not isinstance(raw_capacity, int) or raw_capacity < 2:
            raise HistoryError("raw_capacity", f"expected an integer >= 2, got {raw_capacity!r}")
        tiers = tuple(tiers)
        for tier in tiers:
            if not isinstance(tier, RollupTier):
                raise HistoryError("tiers", f"expected RollupTier items, got {tier!r}")
        resolutions = [t.resolution for t in tiers]
        if len(set(resolutions)) != len(resolutions):
            raise HistoryError("tiers", f"two tiers share a resolution: {resolutions}")
        self._raw = _Ring(raw_capacity, 2)
        self._tiers = {t.resolution: _Tier(t) for t in tiers}
        self._last_t = -math.inf

    def add(self, t: float, value: float) -> None:
        """Record ``value`` at time ``t``; times must not go backwards, values must be finite."""
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise HistoryError("t", f"expected a finite timestamp, got {t!r}")
        if t < self._last_t:
            raise HistoryError("t", f"time went backwards: {t} after {self._last_t}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise HistoryError("value", f"expected a finite number, got {value!r}")
        self._last_t = float(t)
        self._raw.append((float(t), float(value)))
        for tier in self._tiers.values():
            tier.add(float(t), float(value))

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def resolutions(self) -> tuple[float, ...]:
        return tuple(self._tiers)

    def raw(self, since: float | None = None) -> list[tuple[float, float]]:
        """Raw ``(time, value)`` samples still in the ring, oldest first, optionally from ``since``."""
        return [(p[0], p[1]) for p in self._raw.rows() if since is None or p[0] >= since]

    def rollups(self, resolution: float) -> list[Rollup]:
        """Buckets of the tier with this resolution, oldest first (the last one may be partial)."""
        tier = self._tiers.get(resolution)
        if tier is None:
            raise HistoryError("resolution", f"no tier of {resolution!r} s; tiers are {list(self._tiers)}")
        return tier.rollups()

    def points(
        self, resolution: float | None = None, since: float | None = None
    ) -> list[tuple[float, float]]:
        """``(time, value)`` for forecasting: raw samples, or each bucket's mean value at its mean time.

        The mean sample time (not the bucket midpoint) keeps a partial or unevenly sampled bucket
        from biasing the trend.
        """
        if resolution is None:
            return self.raw(since)
        return [
            (r.mean_time, r.mean) for r in self.rollups(resolution) if since is None or r.mean_time >= since
        ]

    def forecast(
        self, limit: float, *, resolution: float | None = None, since: float | None = None
    ) -> float | None:
        """When this series' linear trend reaches ``limit`` (see `forecast_crossing`); None if never."""
        pts = self.points(resolution, since)
        if len(pts) < 2 or pts[0][0] == pts[-1][0]:
            return None
        return forecast_crossing(pts, limit)


_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class MetricHistory:
    """Samples chosen metrics of a registry into bounded per-series histories.

    ``record(now)`` is pure bookkeeping (no clock, no I/O); `run_history_recorder` calls it
    periodically. ``metrics`` are exposed names (a counter's ``..._total``).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        metrics: Iterable[str],
        *,
        raw_capacity: int = 360,
        tiers: Sequence[RollupTier] = DEFAULT_TIERS,
        max_series: int = 256,
    ) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise HistoryError(
                "registry", f"expected a prometheus_client CollectorRegistry, got {registry!r}"
            )
        if isinstance(metrics, str):
            raise HistoryError("metrics", "expected a list of metric names, got a single string")
        self.registry = registry
        self.metrics: tuple[str, ...] = tuple(metrics)
        known = known_metric_names(registry)
        for metric in self.metrics:
            if metric not in known:
                raise UnknownMetricError("metrics", f"{metric!r} is not in the registry")
        if isinstance(max_series, bool) or not isinstance(max_series, int) or max_series < 1:
            raise HistoryError("max_series", f"expected a positive integer, got {max_series!r}")
        SeriesHistory(raw_capacity, tiers)  # validate the shape once, up front
        self._raw_capacity = raw_capacity
        self._tiers = tuple(tiers)
        self._max_series = max_series
        self._series: dict[_SeriesKey, SeriesHistory] = {}
        self._last_now = -math.inf
        self.dropped_series = 0
        self._warned = False

    def record(self, now: float) -> int:
        """Sample every tracked metric at ``now``; returns how many values were stored."""
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise HistoryError("now", f"expected a finite timestamp, got {now!r}")
        if now < self._last_now:
            raise HistoryError("now", f"time went backwards: {now} after {self._last_now}")
        self._last_now = float(now)
        stored = 0
        for metric in self.metrics:
            try:
                series = read_series(self.registry, metric)
            except UnknownMetricError:
                continue  # unregistered since; its history stays readable
            for s in series:
                if not math.isfinite(s.value):
                    continue  # NaN/Inf is "no data", not a point on a trend
                key = (metric, s.labels)
                history = self._series.get(key)
                if history is None:
                    if len(self._series) >= self._max_series:
                        self._drop(key)
                        continue
                    history = self._series[key] = SeriesHistory(self._raw_capacity, self._tiers)
                history.add(now, s.value)
                stored += 1
        return stored

    def _drop(self, key: _SeriesKey) -> None:
        self.dropped_series += 1
        if not self._warned:
            self._warned = True
            get_logger("obs.history").warning(
                "history_series_limit", max_series=self._max_series, metric=key[0], labels=dict(key[1])
            )

    def series_keys(self) -> list[tuple[str, dict[str, str]]]:
        """Every stored series as (metric, labels)."""
        return [(metric, dict(labels)) for metric, labels in sorted(self._series)]

    def series(self, metric: str, labels: Mapping[str, str] | None = None) -> SeriesHistory:
        """The history of ``metric`` with exactly these ``labels`` (none for an unlabelled metric)."""
        if metric not in self.metrics:
            raise UnknownMetricError("metric", f"{metric!r} is not tracked; tracked: {list(self.metrics)}")
        key = (metric, tuple(sorted((labels or {}).items())))
        history = self._series.get(key)
        if history is None:
            raise HistoryError("labels", f"no recorded series {metric}{dict(key[1])} yet")
        return history

    def forecast(
        self,
        metric: str,
        limit: float,
        *,
        labels: Mapping[str, str] | None = None,
        resolution: float | None = None,
        since: float | None = None,
    ) -> float | None:
        """When the series will reach ``limit`` on its linear trend, or None if it is not heading there."""
        return self.series(metric, labels).forecast(limit, resolution=resolution, since=since)


async def run_history_recorder(
    history: MetricHistory,
    *,
    interval: float = 15.0,
    clock: Callable[[], float] = time.time,
    iterations: int | None = None,
) -> None:
    """Call ``history.record(clock())`` every ``interval`` seconds until cancelled (or ``iterations``)."""
    if not isinstance(history, MetricHistory):
        raise ObsError("history", f"expected a MetricHistory, got {history!r}")
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 <= interval < math.inf:
        raise ObsError("interval", f"expected a finite number of seconds >= 0, got {interval!r}")
    if iterations is not None and (
        isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0
    ):
        raise ObsError("iterations", f"expected a non-negative integer or None, got {iterations!r}")
    done = 0
    while iterations is None or done < iterations:
        history.record(clock())
        done += 1
        if iterations is None or done < iterations:
            await anyio.sleep(interval)
