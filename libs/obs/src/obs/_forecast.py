"""Trend forecasting for capacity planning: a least-squares line and when it crosses a limit.

A straight line is the honest model for "disk fills at about X GiB a day": it needs no tuning,
it is explainable, and with a window of recent history it follows regime changes. The fit is
computed on centred time (``t - mean(t)``) so that epoch timestamps (~1.7e9) squared do not eat
the float precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from obs._errors import HistoryError

__all__ = ["LinearFit", "forecast_crossing", "linear_fit"]


@attrs.frozen
class LinearFit:
    """``value(t) = mean_value + slope * (t - mean_time)``, fitted to ``n`` points."""

    slope: float
    mean_time: float
    mean_value: float
    n: int
    last_time: float

    @property
    def intercept(self) -> float:
        """The fitted value at t = 0 (imprecise for epoch times; prefer `value_at`)."""
        return self.mean_value - self.slope * self.mean_time

    def value_at(self, t: float) -> float:
        return self.mean_value + self.slope * (t - self.mean_time)

    def time_at(self, value: float) -> float | None:
        """When the line takes ``value`` (None for a flat line)."""
        if self.slope == 0:
            return None
        return self.mean_time + (value - self.mean_value) / self.slope


def _points(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for item in points:
        try:
            t, v = float(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise HistoryError("points", f"expected (time, value) pairs of numbers, got {item!r}") from exc
        if not (math.isfinite(t) and math.isfinite(v)):
            raise HistoryError("points", f"times and values must be finite, got ({t}, {v})")
        out.append((t, v))
    return out


def linear_fit(points: Iterable[tuple[float, float]]) -> LinearFit:
    """Ordinary least squares over ``(time, value)`` points; needs two distinct times."""
    pts = _points(points)
    if len(pts) < 2:
        raise HistoryError("points", f"a trend needs at least 2 points, got {len(pts)}")
    n = len(pts)
    mean_t = math.fsum(t for t, _ in pts) / n
    mean_v = math.fsum(v for _, v in pts) / n
    sxx = math.fsum((t - mean_t) ** 2 for t, _ in pts)
    if sxx == 0:
        raise HistoryError("points", "all points have the same time; a trend needs two distinct times")
    sxy = math.fsum((t - mean_t) * (v - mean_v) for t, v in pts)
    return LinearFit(sxy / sxx, mean_t, mean_v, n, max(t for t, _ in pts))


def forecast_crossing(points: Iterable[tuple[float, float]], limit: float) -> float | None:
    """When the fitted trend reaches ``limit``, or None if it is not heading toward it.

    The answer is a time at or after the last point. None means the line is flat, or moving away
    from the limit, which for a line is the same as having crossed it before the last point:
    a resource already past its limit is the business of an alert rule, not of a forecast.
    """
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(limit):
        raise HistoryError("limit", f"expected a finite number, got {limit!r}")
    fit = linear_fit(points)
    crossing = fit.time_at(float(limit))
    if crossing is None or not math.isfinite(crossing) or crossing < fit.last_time:
        return None
    return crossing
