"""Trace spans: OpenTelemetry when its API is installed, our own W3C ids otherwise.

Either way `obs.span` maintains the current `TraceContext` in a context variable, so
`inject_trace_context` can put a ``traceparent`` into any message's headers and the receiving
node can continue the same trace with ``obs.span(..., parent=extract_trace_context(headers))``.
With OpenTelemetry (``pip install mycelium-obs[otel]`` plus an SDK configured by the app) the
spans are real OTel spans and get exported; with the API alone or without it, spans cost a
context-variable set and two random ids, and log lines still carry ``trace_id``/``span_id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from types import ModuleType
from typing import Any

from obs._errors import TraceContextError
from obs._redact import REDACTED, is_secret_key
from obs._tracecontext import TRACEPARENT, TRACESTATE, TraceContext, _current, current_trace_context

__all__ = ["Span", "extract_trace_context", "inject_trace_context", "otel_available", "span"]

_otel: ModuleType | None
try:  # pragma: no cover - which branch runs depends on the environment
    import opentelemetry.trace as _otel_trace

    _otel = _otel_trace
except ImportError:  # pragma: no cover
    _otel = None

_TRACER_NAME = "mycelium.obs"


def otel_available() -> bool:
    """Whether spans go through the OpenTelemetry API in this process."""
    return _otel is not None


class Span:
    """The handle `obs.span` yields: its trace context, plus attribute/event setters.

    Setters forward to the OpenTelemetry span when there is one and are no-ops otherwise;
    secret-named attributes are redacted like log fields.
    """

    __slots__ = ("_otel_span", "context", "name")

    def __init__(self, name: str, context: TraceContext, otel_span: Any = None) -> None:
        self.name = name
        self.context = context
        self._otel_span = otel_span

    @property
    def recording(self) -> bool:
        """True when an OpenTelemetry SDK records this span (it will be exported)."""
        return self._otel_span is not None and bool(self._otel_span.is_recording())

    def set_attribute(self, key: str, value: object) -> None:
        if self._otel_span is not None:
            self._otel_span.set_attribute(key, _attribute_value(key, value))

    def add_event(self, name: str, **attributes: object) -> None:
        if self._otel_span is not None:
            self._otel_span.add_event(name, attributes=_attributes(attributes))


def _attribute_value(key: str, value: object) -> Any:
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _attributes(attributes: Mapping[str, object]) -> dict[str, Any]:
    return {k: _attribute_value(k, v) for k, v in attributes.items()}


@contextlib.contextmanager
def span(name: str, *, parent: TraceContext | None = None, **attributes: object) -> Iterator[Span]:
    """Run the block as a span named ``name``, child of ``parent`` or of the current span.

    ``parent`` is typically what `extract_trace_context` returned for an incoming message: the
    remote caller's span. Without a parent and outside any span, a new trace starts.
    """
    if not isinstance(name, str) or not name:
        raise TraceContextError("name", f"a span needs a non-empty string name, got {name!r}")
    if parent is not None and not isinstance(parent, TraceContext):
        raise TraceContextError("parent", f"expected a TraceContext or None, got {type(parent).__name__}")
    parent_ctx = parent if parent is not None else current_trace_context()
    if _otel is None:
        with _activate(parent_ctx.child() if parent_ctx else TraceContext.new()) as ctx:
            yield Span(name, ctx)
        return
    tracer = _otel.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=_otel_parent(parent_ctx, remote=parent is not None), attributes=_attributes(attributes)
    ) as otel_span:
        sc = otel_span.get_span_context()
        own_id = f"{sc.span_id:016x}"
        if sc.is_valid and (parent_ctx is None or own_id != parent_ctx.span_id):
            state = parent_ctx.tracestate if parent_ctx else ""
            ctx = TraceContext(f"{sc.trace_id:032x}", own_id, int(sc.trace_flags), state)
        else:
            # API without an SDK: OTel hands back the parent (or an invalid span); make our own ids.
            ctx = parent_ctx.child() if parent_ctx else TraceContext.new()
        with _activate(ctx):
            yield Span(name, ctx, otel_span)


def _otel_parent(parent: TraceContext | None, *, remote: bool) -> Any:
    """The OTel context to start under: None (OTel's current) when it already is our parent."""
    assert _otel is not None
    if parent is None:
        return None
    current = _otel.get_current_span().get_span_context()
    if (
        current.is_valid
        and f"{current.trace_id:032x}" == parent.trace_id
        and f"{current.span_id:016x}" == parent.span_id
    ):
        return None
    span_context = _otel.SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=remote,
        trace_flags=_otel.TraceFlags(parent.flags),
    )
    return _otel.set_span_in_context(_otel.NonRecordingSpan(span_context))


@contextlib.contextmanager
def _activate(ctx: TraceContext) -> Iterator[TraceContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def inject_trace_context(
    headers: MutableMapping[str, str], context: TraceContext | None = None
) -> TraceContext | None:
    """Write ``traceparent`` (and ``tracestate``) for ``context`` or the current span into ``headers``.

    Returns the context written, or None when there is no span to propagate (headers untouched).
    """
    ctx = context if context is not None else current_trace_context()
    if ctx is None:
        return None
    headers[TRACEPARENT] = ctx.to_traceparent()
    if ctx.tracestate:
        headers[TRACESTATE] = ctx.tracestate
    return ctx


def extract_trace_context(headers: Mapping[str, str]) -> TraceContext | None:
    """The trace context carried by ``headers`` (keys case-insensitive), or None.

    A missing or malformed ``traceparent`` gives None, as the W3C spec requires of receivers (the
    request then starts a new trace); an invalid ``tracestate`` is dropped, the parent kept. Use
    `TraceContext.from_traceparent` directly to get the `TraceContextError` explaining why.
    """
    parent_value: str | None = None
    state_value = ""
    for key, value in headers.items():
        lowered = key.lower()
        if lowered == TRACEPARENT:
            parent_value = value
        elif lowered == TRACESTATE and isinstance(value, str):
            state_value = value.strip()
    if parent_value is None:
        return None
    try:
        ctx = TraceContext.from_traceparent(parent_value)
    except TraceContextError:
        return None
    try:
        return TraceContext(ctx.trace_id, ctx.span_id, ctx.flags, state_value)
    except TraceContextError:
        return ctx
