"""The public surface of `obs` is pinned: changing it is a deliberate act that edits this list."""

import obs

EXPECTED: list[str] = [
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


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(obs.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in obs.__all__:
        assert getattr(obs, name) is not None, name


def test_version_is_exposed() -> None:
    assert obs.__version__.count(".") >= 2
