"""Throttle curves are monotone, bounded, zero up to their threshold, and invertible."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dram import DramConfigError, ExponentialCurve, FunctionCurve, LinearCurve, PointTableCurve, ThrottleCurve

thresholds = st.floats(0.0, 0.95)
maxes = st.floats(0.05, 1.0)
fills = st.floats(0.0, 1.0)


@st.composite
def point_tables(draw: st.DrawFn) -> PointTableCurve:
    n = draw(st.integers(1, 6))
    xs = sorted(set(draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n))))
    ys = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=len(xs), max_size=len(xs))))
    return PointTableCurve(list(zip(xs, ys, strict=True)))


curves = st.one_of(
    st.builds(LinearCurve, thresholds, maxes),
    st.builds(ExponentialCurve, thresholds, maxes, st.floats(0.1, 20.0)),
    point_tables(),
    thresholds.map(lambda t: FunctionCurve(lambda x: max(0.0, (x - t) / (1 - t)) ** 2, threshold=t)),
)


@given(curves, fills, fills)
def test_curve_is_monotone(curve: ThrottleCurve, a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    assert curve.fraction(lo) <= curve.fraction(hi) + 1e-12


@given(curves, st.floats(-5.0, 5.0))
def test_curve_is_bounded_and_clamps_out_of_range_fill(curve: ThrottleCurve, fill: float) -> None:
    assert 0.0 <= curve.fraction(fill) <= 1.0


@given(curves, fills)
def test_curve_is_zero_at_or_below_threshold(curve: ThrottleCurve, fill: float) -> None:
    if fill <= curve.threshold:
        assert curve.fraction(fill) == 0.0


@given(curves, st.floats(0.0, 1.0))
def test_inverse_gives_the_smallest_fill_reaching_a_fraction(curve: ThrottleCurve, target: float) -> None:
    fill = curve.fill_for(target)
    assert 0.0 <= fill <= 1.0
    if target <= curve.fraction(1.0):
        assert curve.fraction(fill) >= target - 1e-9
        # any fill noticeably smaller does not reach the target
        if fill > 1e-6 and target > 0:
            assert curve.fraction(max(0.0, fill - 1e-6)) <= target + 1e-9


@given(curves, fills)
def test_inverse_of_fraction_never_exceeds_the_fill(curve: ThrottleCurve, fill: float) -> None:
    assert curve.fill_for(curve.fraction(fill)) <= fill + 1e-9


def test_linear_curve_values() -> None:
    c = LinearCurve(threshold=0.5, max_fraction=0.8)
    assert c.fraction(0.75) == pytest.approx(0.4)
    assert c.fraction(1.0) == pytest.approx(0.8)
    assert c.fill_for(0.4) == pytest.approx(0.75)


def test_exponential_is_gentler_than_linear_at_first() -> None:
    lin, exp = LinearCurve(0.5, 1.0), ExponentialCurve(0.5, 1.0, 4.0)
    assert exp.fraction(0.6) < lin.fraction(0.6)
    assert exp.fraction(1.0) == pytest.approx(lin.fraction(1.0))


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: LinearCurve(threshold=1.0), "threshold"),
        (lambda: LinearCurve(max_fraction=1.5), "max_fraction"),
        (lambda: ExponentialCurve(steepness=0.0), "steepness"),
        (lambda: PointTableCurve([(0.5, 0.5), (0.4, 0.6)]), "points"),
        (lambda: PointTableCurve([(0.5, 0.5), (0.6, 0.4)]), "monotone"),
        (lambda: FunctionCurve(lambda x: 0.0 if x < 0.1 else 1.1 - x, threshold=0.0), "monotone"),
        (lambda: FunctionCurve(lambda x: 2.0 * x, threshold=0.0), "[0, 1]"),
        (lambda: FunctionCurve(lambda x: x, threshold=0.5), "threshold"),
    ],
)
def test_bad_curve_config_names_the_problem(factory: object, field: str) -> None:
    with pytest.raises(DramConfigError, match=field.replace("[", r"\[")):
        factory()  # type: ignore[operator]


def test_nan_fill_is_rejected() -> None:
    with pytest.raises(DramConfigError):
        LinearCurve().fraction(math.nan)
