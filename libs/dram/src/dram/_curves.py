"""Throttle curves: buffer fill (0..1) -> throttle fraction (0..1).

A curve says how hard to slow the workload as the replication buffer fills. Every curve is
*monotone* (more fill never means less throttle), *bounded* (0 <= fraction <= max_fraction <= 1),
zero at or below its threshold, and *invertible* in the weak sense ``fill_for(f)`` = the smallest
fill whose fraction reaches ``f``; the inverse tells operators at which fill a given slowdown starts.
The defaults mirror QEMU auto-converge (throttle starts at 20 %, capped at 99 %): see docs/dram.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs

from ._errors import DramConfigError

__all__ = ["ThrottleCurve", "LinearCurve", "ExponentialCurve", "PointTableCurve", "FunctionCurve"]

_INVERSE_STEPS = 60  # bisection steps: 2**-60 resolution on [0, 1]


@runtime_checkable
class ThrottleCurve(Protocol):
    """Map buffer fill to a throttle fraction (share of time the workload is held back)."""

    @property
    def threshold(self) -> float: ...

    def fraction(self, fill: float) -> float: ...

    def fill_for(self, fraction: float) -> float: ...


def _clamp01(x: float) -> float:
    if math.isnan(x):
        raise DramConfigError("fill must be a number in [0, 1], got NaN")
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _unit(name: str) -> Callable[[object, attrs.Attribute[float], float], None]:
    def check(_inst: object, _attr: attrs.Attribute[float], value: float) -> None:
        if not (0.0 <= value <= 1.0):
            raise DramConfigError(f"{name} must be in [0, 1], got {value!r}")

    return check


def _threshold_check(_inst: object, _attr: attrs.Attribute[float], value: float) -> None:
    if not (0.0 <= value < 1.0):
        raise DramConfigError(f"threshold must be in [0, 1), got {value!r}")


def _bisect_inverse(curve: ThrottleCurve, fraction: float, top: float) -> float:
    """Smallest fill with curve.fraction(fill) >= fraction; 1.0 when the curve never gets there."""
    if fraction <= 0.0:
        return 0.0
    if fraction > top:
        return 1.0
    lo, hi = curve.threshold, 1.0
    for _ in range(_INVERSE_STEPS):
        mid = (lo + hi) / 2
        if curve.fraction(mid) >= fraction:
            hi = mid
        else:
            lo = mid
    return hi


@attrs.frozen
class LinearCurve:
    """Throttle rises linearly from 0 at ``threshold`` to ``max_fraction`` when the buffer is full."""

    threshold: float = attrs.field(default=0.5, validator=_threshold_check)
    max_fraction: float = attrs.field(default=0.99, validator=_unit("max_fraction"))

    def fraction(self, fill: float) -> float:
        fill = _clamp01(fill)
        if fill <= self.threshold:
            return 0.0
        return min(self.max_fraction, self.max_fraction * (fill - self.threshold) / (1.0 - self.threshold))

    def fill_for(self, fraction: float) -> float:
        if fraction <= 0.0:
            return 0.0
        if fraction > self.max_fraction:
            return 1.0
        return min(1.0, self.threshold + fraction / self.max_fraction * (1.0 - self.threshold))


@attrs.frozen
class ExponentialCurve:
    """Gentle near the threshold, steep near full: ``max * (e^(k x) - 1) / (e^k - 1)``.

    ``x`` is the fill normalised over [threshold, 1]; ``steepness`` k > 0 (larger = later, harder).
    Favours primary speed while the buffer still has room, like QEMU's geometric throttle steps.
    """

    threshold: float = attrs.field(default=0.5, validator=_threshold_check)
    max_fraction: float = attrs.field(default=0.99, validator=_unit("max_fraction"))
    steepness: float = attrs.field(default=4.0)

    @steepness.validator
    def _check_steepness(self, _attr: attrs.Attribute[float], value: float) -> None:
        if not (0.0 < value <= 50.0):
            raise DramConfigError(f"steepness must be in (0, 50], got {value!r}")

    def fraction(self, fill: float) -> float:
        fill = _clamp01(fill)
        if fill <= self.threshold:
            return 0.0
        x = (fill - self.threshold) / (1.0 - self.threshold)
        value = self.max_fraction * math.expm1(self.steepness * x) / math.expm1(self.steepness)
        return min(self.max_fraction, max(0.0, value))

    def fill_for(self, fraction: float) -> float:
        if fraction <= 0.0:
            return 0.0
        if fraction > self.max_fraction:
            return 1.0
        x = math.log1p(fraction / self.max_fraction * math.expm1(self.steepness)) / self.steepness
        candidate = min(1.0, self.threshold + x * (1.0 - self.threshold))
        # Floating point may land a hair below; nudge up to the true smallest fill reaching fraction.
        if self.fraction(candidate) < fraction:
            return _bisect_inverse(self, fraction, self.max_fraction)
        return candidate


def _points_converter(points: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    return tuple((float(a), float(b)) for a, b in points)


@attrs.frozen
class PointTableCurve:
    """Piecewise-linear curve through user points ``(fill, fraction)``, sorted by fill.

    Fills strictly increase, fractions never decrease, all in [0, 1]. Below the first point the
    fraction is 0; above the last it stays at the last fraction. ``threshold`` is the last fill
    before the curve leaves zero.
    """

    points: tuple[tuple[float, float], ...] = attrs.field(converter=_points_converter)

    @points.validator
    def _check_points(self, _attr: attrs.Attribute[object], value: tuple[tuple[float, float], ...]) -> None:
        if not value:
            raise DramConfigError("points must hold at least one (fill, fraction) pair")
        for i, (fill, frac) in enumerate(value):
            if not (0.0 <= fill <= 1.0 and 0.0 <= frac <= 1.0):
                raise DramConfigError(f"points[{i}] = {(fill, frac)!r}: fill and fraction must be in [0, 1]")
            if i and fill <= value[i - 1][0]:
                raise DramConfigError(
                    f"points[{i}]: fills must strictly increase, got {fill} after {value[i - 1][0]}"
                )
            if i and frac < value[i - 1][1]:
                raise DramConfigError(f"points[{i}]: fractions must not decrease (curve must be monotone)")
        if value[0][1] > 0.0 and value[0][0] == 0.0:
            raise DramConfigError("points[0]: a curve must throttle nothing at fill 0")

    @property
    def threshold(self) -> float:
        last_zero = 0.0
        for fill, frac in self.points:
            if frac > 0.0:
                break
            last_zero = fill
        return last_zero

    def fraction(self, fill: float) -> float:
        fill = _clamp01(fill)
        prev_fill, prev_frac = 0.0, 0.0
        for f, fr in self.points:
            if fill <= f:
                if f == prev_fill:
                    return fr
                value = prev_frac + (fr - prev_frac) * (fill - prev_fill) / (f - prev_fill)
                return min(fr, max(prev_frac, value))  # no rounding past the segment's ends
            prev_fill, prev_frac = f, fr
        return prev_frac

    def fill_for(self, fraction: float) -> float:
        return _bisect_inverse(self, fraction, self.points[-1][1])


@attrs.frozen
class FunctionCurve:
    """A user function ``fill -> fraction``, checked at construction on a grid of sample points.

    The function must be monotone non-decreasing, within [0, 1], and 0 at ``threshold`` and below;
    values are clamped to [0, 1] at run time so a slightly sloppy function cannot stop the workload
    for longer than a full duty cycle.
    """

    function: Callable[[float], float]
    threshold: float = attrs.field(default=0.5, validator=_threshold_check)
    samples: int = attrs.field(default=257)

    def __attrs_post_init__(self) -> None:
        if self.samples < 2:
            raise DramConfigError(f"samples must be >= 2, got {self.samples}")
        prev = 0.0
        for i in range(self.samples):
            x = i / (self.samples - 1)
            y = float(self.function(x))
            if not (0.0 <= y <= 1.0):
                raise DramConfigError(f"function({x:.4f}) = {y!r}: a throttle fraction must be in [0, 1]")
            if y < prev:
                raise DramConfigError(f"function is not monotone: f({x:.4f}) = {y} < {prev}")
            if x <= self.threshold and y > 0.0:
                raise DramConfigError(
                    f"function({x:.4f}) = {y} must be 0 at or below threshold {self.threshold}"
                )
            prev = y

    def fraction(self, fill: float) -> float:
        fill = _clamp01(fill)
        if fill <= self.threshold:
            return 0.0
        return _clamp01(float(self.function(fill)))

    def fill_for(self, fraction: float) -> float:
        return _bisect_inverse(self, fraction, self.fraction(1.0))
