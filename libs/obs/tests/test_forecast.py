"""Least-squares trend and limit-crossing forecasts, with property tests on exact lines."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import obs

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
slopes = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False).filter(lambda s: abs(s) > 1e-3)
times = st.lists(
    st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=2, max_size=40, unique=True
).filter(lambda ts: max(ts) - min(ts) > 1.0)
epochs = st.floats(min_value=0, max_value=2e9, allow_nan=False)


def line(ts: list[float], intercept: float, slope: float, origin: float = 0.0) -> list[tuple[float, float]]:
    return [(origin + t, intercept + slope * t) for t in ts]


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(times, finite, slopes)
def test_an_exact_line_is_recovered(ts: list[float], intercept: float, slope: float) -> None:
    fit = obs.linear_fit(line(ts, intercept, slope))
    assert fit.slope == pytest.approx(slope, rel=1e-6, abs=1e-9)
    assert fit.value_at(0.0) == pytest.approx(intercept, rel=1e-6, abs=1e-3)
    assert fit.n == len(ts)


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(times, finite, slopes, finite)
def test_crossing_of_an_exact_line_is_where_algebra_says(
    ts: list[float], intercept: float, slope: float, limit: float
) -> None:
    expected = (limit - intercept) / slope
    got = obs.forecast_crossing(line(ts, intercept, slope), limit)
    if expected < max(ts) - 1e-6 * max(1.0, abs(expected)):
        assert got is None
    elif expected > max(ts) + 1e-6 * max(1.0, abs(expected)):
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-3)


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(times, finite, slopes, st.floats(min_value=1, max_value=1e6), epochs)
def test_shifting_time_shifts_the_crossing(
    ts: list[float], intercept: float, slope: float, ahead: float, origin: float
) -> None:
    """Epoch-sized timestamps give the same answer as small ones (the fit is centred)."""
    last_value = intercept + slope * max(ts)
    limit = last_value + math.copysign(ahead, slope)  # always ahead of the trend
    near = obs.forecast_crossing(line(ts, intercept, slope), limit)
    far = obs.forecast_crossing(line(ts, intercept, slope, origin), limit)
    assert near is not None
    assert far is not None
    assert far - origin == pytest.approx(near, rel=1e-6, abs=1e-2)


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(times, finite, slopes, st.floats(min_value=1, max_value=1e6))
def test_a_trend_moving_away_from_the_limit_never_crosses(
    ts: list[float], intercept: float, slope: float, behind: float
) -> None:
    first_value = intercept + slope * min(ts)
    limit = first_value - math.copysign(behind, slope)  # behind the whole series
    assert obs.forecast_crossing(line(ts, intercept, slope), limit) is None


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(st.lists(st.tuples(st.floats(0, 1000, allow_nan=False), finite), min_size=3, max_size=30), finite)
def test_the_fit_has_the_least_squared_error(points: list[tuple[float, float]], nudge: float) -> None:
    assume(max(t for t, _ in points) - min(t for t, _ in points) > 1.0)
    assume(nudge != 0)
    fit = obs.linear_fit(points)

    def sse(slope: float) -> float:
        return math.fsum((v - (fit.mean_value + slope * (t - fit.mean_time))) ** 2 for t, v in points)

    assert sse(fit.slope) <= sse(fit.slope + nudge * 1e-3) * (1 + 1e-9) + 1e-9


def test_a_flat_series_never_crosses() -> None:
    assert obs.forecast_crossing([(0, 5.0), (1, 5.0), (2, 5.0)], 10.0) is None


def test_disk_filling_up_is_forecast() -> None:
    # 1 GiB/hour from 10 GiB with noise; 100 GiB disk: full ~90 h after the start.
    gib = 2**30
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.3, -0.3, 0.1]
    points = [(h * 3600.0, (10 + h + noise[h % 10]) * gib) for h in range(48)]
    when = obs.forecast_crossing(points, 100 * gib)
    assert when is not None
    assert when / 3600 == pytest.approx(90, abs=1.0)


@pytest.mark.parametrize(
    ("points", "field"),
    [
        ([(0, 1.0)], "points"),
        ([(1, 1.0), (1, 2.0)], "points"),
        ([(0, 1.0), (1, math.nan)], "points"),
        ([(0, 1.0), ("x", 1.0)], "points"),
        ([(0, 1.0), (1,)], "points"),
    ],
)
def test_bad_points_name_the_field(points: list[tuple[float, ...]], field: str) -> None:
    with pytest.raises(obs.HistoryError) as info:
        obs.linear_fit(points)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_bad_limit_names_the_field() -> None:
    with pytest.raises(obs.HistoryError) as info:
        obs.forecast_crossing([(0, 1.0), (1, 2.0)], math.inf)
    assert info.value.field == "limit"


def test_fit_helpers() -> None:
    fit = obs.linear_fit([(0, 1.0), (2, 5.0)])
    assert fit.intercept == pytest.approx(1.0)
    assert fit.time_at(9.0) == pytest.approx(4.0)
    assert obs.linear_fit([(0, 1.0), (2, 1.0)]).time_at(3.0) is None
