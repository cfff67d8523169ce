"""Reading current sample values out of a prometheus-client registry, by name and label matchers.

Alert rules and the history store both ask "what are the current values of series X whose
labels match Y"; this module answers it once. Names are the *sample* names as exposed (a
counter's ``..._total``, a histogram's ``..._count``/``..._sum``/``..._bucket``) or the family
name, so a rule reads exactly what a PromQL query over the scrape would read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry

from obs._errors import AlertRuleError, UnknownMetricError

__all__ = ["LabelMatcher", "Series", "known_metric_names", "read_series", "to_matchers"]

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_OPS = ("=", "!=", "=~", "!~")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": (),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": (),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": (),
}


def _check_label(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str) or not _LABEL.match(value):
        raise AlertRuleError("matchers", f"label name {value!r} is not valid; use [a-zA-Z_][a-zA-Z0-9_]*")


def _check_op(_inst: object, _attr: object, value: Any) -> None:
    if value not in _OPS:
        raise AlertRuleError("matchers", f"matcher operator {value!r} is not one of {', '.join(_OPS)}")


def _check_value(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str):
        raise AlertRuleError("matchers", f"matcher value must be a string, got {value!r}")


@attrs.frozen
class LabelMatcher:
    """One PromQL-style label matcher: ``=``, ``!=``, ``=~`` or ``!~`` (regexes match the whole value)."""

    label: str = attrs.field(validator=_check_label)
    value: str = attrs.field(validator=_check_value)
    op: str = attrs.field(default="=", validator=_check_op)
    _pattern: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)

    @_pattern.default
    def _compile(self) -> re.Pattern[str] | None:
        if self.op not in ("=~", "!~"):
            return None
        try:
            return re.compile(self.value)
        except re.error as exc:
            raise AlertRuleError("matchers", f"regex {self.value!r} for label {self.label!r}: {exc}") from exc

    def matches(self, labels: Mapping[str, str]) -> bool:
        # A missing label reads as the empty string, as in PromQL.
        actual = labels.get(self.label, "")
        if self._pattern is not None:
            return bool(self._pattern.fullmatch(actual)) == (self.op == "=~")
        return (actual == self.value) == (self.op == "=")


def to_matchers(value: object) -> tuple[LabelMatcher, ...]:
    """Accept ``{"label": "value"}`` (equality) or an iterable of `LabelMatcher`."""
    if isinstance(value, Mapping):
        return tuple(LabelMatcher(str(k), v) for k, v in value.items())
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise AlertRuleError("matchers", f"expected a mapping label->value or LabelMatchers, got {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, LabelMatcher):
            raise AlertRuleError("matchers", f"expected LabelMatcher items, got {item!r}")
    return items


@attrs.frozen
class Series:
    """One time series' current value: its sample name, labels and value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def known_metric_names(registry: CollectorRegistry) -> set[str]:
    """Every family and sample name the registry can expose (including suffixes with no samples yet)."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def read_series(
    registry: CollectorRegistry, metric: str, matchers: tuple[LabelMatcher, ...] = ()
) -> list[Series]:
    """Current values of ``metric`` whose labels satisfy every matcher.

    Raises `UnknownMetricError` when the registry has no such metric at all (as opposed to a
    labelled metric that simply has no series yet, which reads as an empty list).
    """
    found = False
    out: list[Series] = []
    for family in registry.collect():
        candidates = {family.name, *(family.name + s for s in _SUFFIXES.get(family.type, ()))}
        if metric not in candidates:
            continue
        found = True
        for sample in family.samples:
            # A gauge family's name is its sample name; a counter's family "x" answers for "x_total".
            wanted = sample.name == metric or (
                metric == family.name and sample.name == family.name + "_total"
            )
            if wanted and all(m.matches(sample.labels) for m in matchers):
                out.append(Series(sample.name, tuple(sorted(sample.labels.items())), float(sample.value)))
    if not found:
        raise UnknownMetricError("metric", f"no metric named {metric!r} in the registry")
    return out
