"""Spans and trace propagation through message headers, with and without OpenTelemetry."""

from __future__ import annotations

import io
import json
import logging
import types
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

import obs
from obs import _tracing


@pytest.fixture
def no_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave as if opentelemetry were not installed."""
    monkeypatch.setattr(_tracing, "_otel", None)


@pytest.fixture
def memory_exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A real OpenTelemetry SDK tracer provider exporting to memory, used by obs only."""
    otel_trace = pytest.importorskip("opentelemetry.trace", reason="opentelemetry-api not installed")
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The module as obs sees it, except that tracers come from our provider, not the global one.
    shim = types.SimpleNamespace(
        **{k: getattr(otel_trace, k) for k in dir(otel_trace) if not k.startswith("__")}
    )
    shim.get_tracer = provider.get_tracer
    monkeypatch.setattr(_tracing, "_otel", shim)
    yield exporter
    provider.shutdown()


def test_nested_spans_share_the_trace_and_restore_the_parent(no_otel: None) -> None:
    assert obs.current_trace_context() is None
    with obs.span("outer") as outer:
        assert obs.current_trace_context() == outer.context
        with obs.span("inner") as inner:
            assert inner.context.trace_id == outer.context.trace_id
            assert inner.context.span_id != outer.context.span_id
        assert obs.current_trace_context() == outer.context
    assert obs.current_trace_context() is None
    assert not outer.recording


def test_context_travels_in_headers_to_another_node(no_otel: None) -> None:
    headers: dict[str, str] = {"content-type": "x"}
    with obs.span("gossip.round", node_id="n1") as sender:
        sent = obs.inject_trace_context(headers)
    assert sent == sender.context
    # "On the other node": nothing active, only the headers arrive.
    assert obs.current_trace_context() is None
    received = obs.extract_trace_context(headers)
    assert received == sender.context
    with obs.span("gossip.merge", parent=received) as handler:
        assert handler.context.trace_id == sender.context.trace_id
        assert handler.context.span_id != sender.context.span_id


def test_inject_outside_a_span_leaves_headers_alone(no_otel: None) -> None:
    headers: dict[str, str] = {}
    assert obs.inject_trace_context(headers) is None
    assert headers == {}


def test_tracestate_travels_with_the_parent() -> None:
    ctx = obs.TraceContext.new()
    headers: dict[str, str] = {}
    obs.inject_trace_context(headers, obs.TraceContext(ctx.trace_id, ctx.span_id, 1, "vendor=abc"))
    assert headers["tracestate"] == "vendor=abc"
    assert obs.extract_trace_context({"TraceParent": headers["traceparent"], "TRACESTATE": "vendor=abc"}) == (
        obs.TraceContext(ctx.trace_id, ctx.span_id, 1, "vendor=abc")
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": "garbage"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "x" * 100_000},
    ],
)
def test_missing_or_bad_traceparent_extracts_as_none(headers: dict[str, str]) -> None:
    assert obs.extract_trace_context(headers) is None


def test_an_oversized_tracestate_is_dropped_but_the_parent_kept() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = obs.extract_trace_context({"traceparent": parent, "tracestate": "a=" + "b" * 1000})
    assert ctx is not None
    assert ctx.tracestate == ""


def test_span_validates_its_arguments() -> None:
    with pytest.raises(obs.TraceContextError) as info, obs.span(""):
        pass
    assert info.value.field == "name"
    with pytest.raises(obs.TraceContextError) as info2, obs.span("x", parent="00-abc"):  # type: ignore[arg-type]
        pass
    assert info2.value.field == "parent"


def test_log_lines_inside_a_span_carry_its_ids(no_otel: None) -> None:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = obs.configure_logging("INFO", out)
    try:
        with obs.span("op") as s:
            obs.get_logger("t").info("inside")
        obs.get_logger("t").info("outside")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["trace_id"] == s.context.trace_id
    assert inside["span_id"] == s.context.span_id
    assert "trace_id" not in outside


@pytest.mark.anyio
async def test_child_tasks_inherit_the_span_and_siblings_do_not_mix(no_otel: None) -> None:
    seen: dict[str, obs.TraceContext | None] = {}

    async def worker(tag: str) -> None:
        with obs.span(f"work.{tag}") as s:
            await anyio.lowlevel.checkpoint()
            seen[tag] = obs.current_trace_context()
            assert seen[tag] == s.context

    with obs.span("parent") as parent:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, "a")
            tg.start_soon(worker, "b")
    a, b = seen["a"], seen["b"]
    assert a is not None
    assert b is not None
    assert a.trace_id == b.trace_id == parent.context.trace_id
    assert a.span_id != b.span_id


def test_api_only_opentelemetry_still_gives_our_ids() -> None:
    pytest.importorskip("opentelemetry.trace", reason="opentelemetry-api not installed")
    assert obs.otel_available()
    # No SDK configured globally: OTel's tracer is a no-op, so obs makes the ids itself.
    with obs.span("outer") as outer, obs.span("inner") as inner:
        assert not outer.recording
        assert inner.context.trace_id == outer.context.trace_id
        assert inner.context.span_id != outer.context.span_id
    remote = obs.TraceContext.new()
    with obs.span("handler", parent=remote) as handler:
        assert handler.context.trace_id == remote.trace_id
        assert handler.context.span_id != remote.span_id


def test_with_an_sdk_spans_are_exported_with_the_same_ids(memory_exporter: object) -> None:
    remote = obs.TraceContext.new()
    with obs.span("rpc.handle", parent=remote, peer="n2", api_token="t0k") as outer:
        assert outer.recording
        outer.set_attribute("bytes", 12)
        outer.add_event("decoded", frames=3)
        with obs.span("rpc.inner") as inner:
            pass
    spans = {s.name: s for s in memory_exporter.get_finished_spans()}  # type: ignore[attr-defined]
    exported_outer, exported_inner = spans["rpc.handle"], spans["rpc.inner"]
    assert f"{exported_outer.context.trace_id:032x}" == remote.trace_id
    assert f"{exported_outer.parent.span_id:016x}" == remote.span_id
    assert exported_outer.parent.is_remote
    assert f"{exported_outer.context.span_id:016x}" == outer.context.span_id
    assert exported_inner.parent.span_id == exported_outer.context.span_id
    assert f"{exported_inner.context.span_id:016x}" == inner.context.span_id
    assert exported_outer.attributes["peer"] == "n2"
    assert exported_outer.attributes["api_token"] == obs.REDACTED
    assert exported_outer.attributes["bytes"] == 12
    assert exported_outer.events[0].name == "decoded"


def test_an_exception_in_a_span_is_recorded_and_propagates(memory_exporter: object) -> None:
    with pytest.raises(ZeroDivisionError), obs.span("fails"):
        _ = 1 / 0
    (exported,) = memory_exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert exported.status.status_code.name == "ERROR"
    assert obs.current_trace_context() is None


def test_without_opentelemetry_importable_obs_still_traces() -> None:
    """A fresh interpreter where `import opentelemetry` fails: the real 'not installed' path."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import obs\n"
        "assert not obs.otel_available()\n"
        "h = {}\n"
        "with obs.span('a') as a:\n"
        "    obs.inject_trace_context(h)\n"
        "with obs.span('b', parent=obs.extract_trace_context(h)) as b:\n"
        "    pass\n"
        "assert b.context.trace_id == a.context.trace_id and not b.recording\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
