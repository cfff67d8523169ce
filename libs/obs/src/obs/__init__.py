"""mycelium-obs: metrics, structured JSON logs, trace spans, alerts and metric history.

The public API is exactly what `__all__` lists; the `_modules` behind it are private.
"""

from contextlib import suppress as _suppress
from importlib.metadata import version as _version

from obs._alerts import AlertEvaluator, AlertEvent, AlertRule, AlertState
from obs._errors import (
    AlertRuleError,
    HistoryError,
    MetricClashError,
    MetricError,
    NotifierError,
    ObsError,
    TraceContextError,
    UnknownMetricError,
)
from obs._exposition import MetricsServer
from obs._forecast import LinearFit, forecast_crossing, linear_fit
from obs._history import MetricHistory, Rollup, RollupTier, SeriesHistory, run_history_recorder
from obs._logging import BoundLogger, JsonFormatter, configure_logging, get_logger
from obs._metrics import DEFAULT_BUCKETS, Metrics
from obs._notifiers import (
    CallableNotifier,
    LogNotifier,
    Notifier,
    WebhookNotifier,
    alertmanager_alerts,
    run_alert_loop,
)
from obs._query import LabelMatcher
from obs._redact import REDACTED, is_secret_key, redact
from obs._tracecontext import TraceContext, current_trace_context
from obs._tracing import Span, extract_trace_context, inject_trace_context, otel_available, span

__version__ = _version("mycelium-obs")

__all__ = [
    # metrics
    "Metrics",
    "DEFAULT_BUCKETS",
    "MetricsServer",
    # logging
    "get_logger",
    "BoundLogger",
    "JsonFormatter",
    "configure_logging",
    "redact",
    "is_secret_key",
    "REDACTED",
    # tracing
    "span",
    "Span",
    "inject_trace_context",
    "extract_trace_context",
    "TraceContext",
    "current_trace_context",
    "otel_available",
    # alerts
    "AlertRule",
    "LabelMatcher",
    "AlertEvaluator",
    "AlertEvent",
    "AlertState",
    "Notifier",
    "LogNotifier",
    "WebhookNotifier",
    "CallableNotifier",
    "run_alert_loop",
    "alertmanager_alerts",
    # history and forecasts
    "MetricHistory",
    "SeriesHistory",
    "RollupTier",
    "Rollup",
    "run_history_recorder",
    "LinearFit",
    "linear_fit",
    "forecast_crossing",
    # errors
    "ObsError",
    "MetricError",
    "MetricClashError",
    "UnknownMetricError",
    "TraceContextError",
    "AlertRuleError",
    "NotifierError",
    "HistoryError",
]

# Tracebacks and docs show the public path (obs.Metrics), not the private module (httpx does this).
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and not isinstance(_obj, tuple | str):
        with _suppress(AttributeError, TypeError):
            _obj.__module__ = "obs"
del _name, _obj
