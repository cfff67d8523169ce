"""The benchmark harness every library's benchmarks use.

A benchmark is a :class:`Comparison`: our code and a peer (a real program or library, or a
published reference number when no peer can run here) measured in the same run, alternating
ours/peer for several repetitions so that machine noise hits both alike. The harness reports
median and spread for both and the ratio ours/peer, oriented so that > 1 means "we are better"
is never assumed: the table states the unit and whether higher is better.

Benchmark modules are ``bench/bench_<lib>.py``; each defines::

    def comparisons(stack: contextlib.ExitStack) -> list[Comparison]: ...

``stack`` owns shared resources (a started etcd cluster, a temp dir) and is closed after the
module's comparisons have run, even when one fails.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Trial:
    """One side of a comparison. ``run`` performs one repetition and returns its measurement."""

    name: str
    run: Callable[[], float]


@attrs.frozen
class Comparison:
    """Our trial against a peer trial (or a published reference value), same unit."""

    name: str
    unit: str
    higher_is_better: bool
    ours: Trial
    peer: Trial | None = None
    reference: float | None = None
    reference_source: str = ""
    repetitions: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    note: str = ""

    def __attrs_post_init__(self) -> None:
        if self.peer is None and self.reference is None:
            raise ValueError(f"comparison {self.name!r} needs a peer trial or a reference value")


@attrs.frozen
class Stats:
    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        return cls(statistics.median(samples), min(samples), max(samples), tuple(samples))

    @property
    def spread_pct(self) -> float:
        """Half the min-max range as a percentage of the median: a crude but honest noise gauge."""
        if self.median == 0:
            return 0.0
        return 100.0 * (self.high - self.low) / 2 / abs(self.median)


@attrs.frozen
class Result:
    comparison: Comparison
    ours: Stats
    peer: Stats | None
    error: str = ""

    @property
    def peer_value(self) -> float | None:
        if self.peer is not None:
            return self.peer.median
        return self.comparison.reference

    @property
    def ratio(self) -> float | None:
        """ours / peer in the comparison's unit (for "lower is better" units, < 1 means faster)."""
        pv = self.peer_value
        if pv in (None, 0) or self.error:
            return None
        assert pv is not None
        return self.ours.median / pv

    def as_json(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "name": c.name,
            "unit": c.unit,
            "higher_is_better": c.higher_is_better,
            "ours": {"name": c.ours.name, **_stats_json(self.ours)},
            "peer": (
                {"name": c.peer.name, **_stats_json(self.peer)}
                if c.peer is not None and self.peer is not None
                else {"name": c.reference_source, "reference": c.reference}
            ),
            "ratio": self.ratio,
            "note": c.note,
            "error": self.error,
        }


def _stats_json(s: Stats) -> dict[str, Any]:
    return {"median": s.median, "min": s.low, "max": s.high, "samples": list(s.samples)}


def measure(comparison: Comparison, progress: Callable[[str], None] = lambda _m: None) -> Result:
    """Run ours and the peer alternately, ``repetitions`` times each."""
    ours: list[float] = []
    peer: list[float] = []
    for i in range(comparison.repetitions):
        progress(f"{comparison.name}: repetition {i + 1}/{comparison.repetitions}")
        # Alternate who goes first so warm caches and thermal drift do not favour one side.
        order = [("ours", comparison.ours), ("peer", comparison.peer)]
        if i % 2:
            order.reverse()
        for side, trial in order:
            if trial is None:
                continue
            value = trial.run()
            (ours if side == "ours" else peer).append(value)
    return Result(comparison, Stats.of(ours), Stats.of(peer) if peer else None)
