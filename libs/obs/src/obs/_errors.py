"""The one exception hierarchy of `obs`: every bad input raises a subclass of `ObsError`.

Each error carries ``field``: the name of the argument or field that was wrong, so a caller (or a
CLI on top) can point the user at it without parsing the message.
"""

from __future__ import annotations

__all__ = [
    "ObsError",
    "MetricError",
    "MetricClashError",
    "UnknownMetricError",
    "TraceContextError",
    "AlertRuleError",
    "NotifierError",
    "HistoryError",
]


class ObsError(Exception):
    """Root of every error `obs` raises on purpose."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ObsError], tuple[str, str]]:
        # Rebuild from (field, message) so errors survive pickling (worker processes, to_process).
        return (type(self), (self.field, self.message))


class MetricError(ObsError, ValueError):
    """A metric declaration is invalid (component, name, unit, labels, buckets)."""


class MetricClashError(MetricError):
    """A metric name is already registered with a different type, labels or buckets."""


class UnknownMetricError(ObsError, LookupError):
    """A rule or history asked for a metric the registry does not hold."""


class TraceContextError(ObsError, ValueError):
    """A W3C trace context header (traceparent / tracestate) is malformed."""


class AlertRuleError(ObsError, ValueError):
    """An alert rule is invalid (name, metric, matcher, comparison, threshold, duration)."""


class NotifierError(ObsError):
    """A notifier could not deliver an alert event (bad URL, timeout, non-2xx reply)."""


class HistoryError(ObsError, ValueError):
    """A history store or forecast got invalid input (capacity, tiers, time going backwards)."""
