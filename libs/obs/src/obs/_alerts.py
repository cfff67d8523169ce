"""Alert rules evaluated in-process against a registry: a pure evaluator with an injected clock.

Semantics follow Prometheus alerting rules: a rule selects series (metric + label matchers),
compares each series' current value with a threshold, and a series that keeps matching for
``for_seconds`` goes from *pending* to *firing*; when it stops matching (or disappears) a firing
alert *resolves* and a pending one is forgotten. Each series alerts on its own, so
``peers_connected < 2`` fires once per node label that is short of peers.

`AlertEvaluator.evaluate(now)` does no I/O and reads no clock: tests drive it with virtual time
and the anyio loop in `obs._notifiers` drives it with the real one.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry

from obs._errors import AlertRuleError, ObsError, UnknownMetricError
from obs._query import LabelMatcher, known_metric_names, read_series, to_matchers

__all__ = ["COMPARISONS", "AlertEvaluator", "AlertEvent", "AlertRule", "AlertState", "parse_duration"]

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
SEVERITIES = ("info", "warning", "critical")
_RULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)\Z")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(field: str, value: object) -> float:
    """Seconds from a number or a Prometheus-style duration string (``"90s"``, ``"5m"``, ``"1h"``)."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match:
            raise AlertRuleError(field, f"{value!r} is not a duration; use seconds or e.g. '30s', '5m', '1h'")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise AlertRuleError(field, f"expected a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _check_name(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str) or not _RULE_NAME.match(value):
        raise AlertRuleError("name", f"{value!r} is not a valid rule name; use [A-Za-z][A-Za-z0-9_.-]*")


def _check_metric(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str) or not _METRIC_NAME.match(value):
        raise AlertRuleError(
            "metric", f"{value!r} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
        )


def _check_comparison(_inst: object, _attr: object, value: Any) -> None:
    if value not in COMPARISONS:
        raise AlertRuleError("comparison", f"{value!r} is not one of {' '.join(COMPARISONS)}")


def _check_threshold(_inst: object, _attr: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlertRuleError("threshold", f"expected a finite number, got {value!r}")


def _check_severity(_inst: object, _attr: object, value: Any) -> None:
    if value not in SEVERITIES:
        raise AlertRuleError("severity", f"{value!r} is not one of {', '.join(SEVERITIES)}")


def _to_for(value: Any) -> float:
    return parse_duration("for_seconds", value)


@attrs.frozen
class AlertRule:
    """``metric{matchers} <comparison> threshold`` sustained for ``for_seconds`` raises an alert.

    ``metric`` is the exposed name (``mycelium_dram_replication_lag_seconds``, a counter's
    ``..._total``); ``matchers`` is ``{"label": "value"}`` or a sequence of `LabelMatcher`.
    """

    name: str = attrs.field(validator=_check_name)
    metric: str = attrs.field(validator=_check_metric)
    comparison: str = attrs.field(validator=_check_comparison)
    threshold: float = attrs.field(validator=_check_threshold)
    for_seconds: float = attrs.field(default=0.0, converter=_to_for)
    matchers: tuple[LabelMatcher, ...] = attrs.field(default=(), converter=to_matchers)
    severity: str = attrs.field(default="warning", validator=_check_severity)
    summary: str = attrs.field(default="", validator=attrs.validators.instance_of(str))

    def holds(self, value: float) -> bool:
        """Whether ``value`` breaches the rule (NaN never does: no data is not an alarm)."""
        return not math.isnan(value) and COMPARISONS[self.comparison](value, self.threshold)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertRule:
        """Build from configuration (TOML/JSON): keys as the fields, ``for`` accepted for ``for_seconds``."""
        if not isinstance(data, Mapping):
            raise AlertRuleError("rule", f"expected a table of rule fields, got {data!r}")
        fields = dict(data)
        if "for" in fields:
            fields["for_seconds"] = fields.pop("for")
        allowed = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise AlertRuleError(
                unknown[0], f"unknown rule field; valid fields are {', '.join(sorted(allowed))}"
            )
        missing = [f for f in ("name", "metric", "comparison", "threshold") if f not in fields]
        if missing:
            raise AlertRuleError(missing[0], "required rule field is missing")
        return cls(**fields)


class AlertState(enum.Enum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@attrs.frozen
class AlertEvent:
    """A change (firing, resolved) or, from `AlertEvaluator.active`, the status of one series."""

    rule: str
    state: AlertState
    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float
    threshold: float
    comparison: str
    severity: str
    summary: str
    active_since: float
    at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what the webhook posts)."""
        return {
            "rule": self.rule,
            "state": self.state.value,
            "metric": self.metric,
            "labels": dict(self.labels),
            "value": self.value if math.isfinite(self.value) else str(self.value),
            "threshold": self.threshold,
            "comparison": self.comparison,
            "severity": self.severity,
            "summary": self.summary,
            "active_since": self.active_since,
            "at": self.at,
        }


@attrs.define
class _Active:
    since: float
    value: float
    firing: bool = False


class AlertEvaluator:
    """Holds rule state; `evaluate(now)` returns what changed. No I/O, no clock of its own."""

    def __init__(self, registry: CollectorRegistry, rules: Iterable[AlertRule]) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise AlertRuleError(
                "registry", f"expected a prometheus_client CollectorRegistry, got {registry!r}"
            )
        self.registry = registry
        self.rules: tuple[AlertRule, ...] = tuple(rules)
        names: set[str] = set()
        known = known_metric_names(registry)
        for rule in self.rules:
            if not isinstance(rule, AlertRule):
                raise AlertRuleError("rules", f"expected AlertRule items, got {rule!r}")
            if rule.name in names:
                raise AlertRuleError("name", f"two rules are named {rule.name!r}; rule names must be unique")
            names.add(rule.name)
            if rule.metric not in known:
                raise UnknownMetricError(
                    "metric", f"rule {rule.name!r} reads {rule.metric!r}, which the registry does not hold"
                )
        self._active: dict[tuple[str, tuple[tuple[str, str], ...]], _Active] = {}
        self._last_now = -math.inf

    def evaluate(self, now: float) -> list[AlertEvent]:
        """Read every rule's series at time ``now`` and return the firing/resolved transitions."""
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise ObsError("now", f"expected a finite timestamp in seconds, got {now!r}")
        if now < self._last_now:
            raise ObsError("now", f"time went backwards: {now} after {self._last_now}")
        self._last_now = float(now)
        events: list[AlertEvent] = []
        for rule in self.rules:
            try:
                series = read_series(self.registry, rule.metric, rule.matchers)
            except UnknownMetricError:
                series = []  # unregistered since: its alerts resolve below
            breaching = set()
            for s in series:
                if not rule.holds(s.value):
                    continue
                key = (rule.name, s.labels)
                breaching.add(key)
                state = self._active.setdefault(key, _Active(since=now, value=s.value))
                state.value = s.value
                if not state.firing and now - state.since >= rule.for_seconds:
                    state.firing = True
                    events.append(self._event(rule, s.labels, state, AlertState.FIRING, now))
            for key in [k for k in self._active if k[0] == rule.name and k not in breaching]:
                state = self._active.pop(key)
                if state.firing:
                    events.append(self._event(rule, key[1], state, AlertState.RESOLVED, now))
        return events

    def active(self) -> list[AlertEvent]:
        """Every series currently pending or firing, as of the last `evaluate`."""
        by_name = {r.name: r for r in self.rules}
        return [
            self._event(
                by_name[name],
                labels,
                state,
                AlertState.FIRING if state.firing else AlertState.PENDING,
                self._last_now,
            )
            for (name, labels), state in sorted(self._active.items())
        ]

    @staticmethod
    def _event(
        rule: AlertRule, labels: tuple[tuple[str, str], ...], state: _Active, kind: AlertState, now: float
    ) -> AlertEvent:
        return AlertEvent(
            rule=rule.name,
            state=kind,
            metric=rule.metric,
            labels=labels,
            value=state.value,
            threshold=rule.threshold,
            comparison=rule.comparison,
            severity=rule.severity,
            summary=rule.summary,
            active_since=state.since,
            at=now,
        )
