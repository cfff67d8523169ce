"""The W3C traceparent codec: round trips, the spec's rejection rules, and fuzzed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import obs

SPEC_EXAMPLE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

hex_id = st.integers(min_value=1, max_value=(1 << 128) - 1).map(lambda n: f"{n:032x}")
hex_span = st.integers(min_value=1, max_value=(1 << 64) - 1).map(lambda n: f"{n:016x}")
contexts = st.builds(obs.TraceContext, hex_id, hex_span, st.integers(0, 255))


def test_the_spec_example_parses() -> None:
    ctx = obs.TraceContext.from_traceparent(SPEC_EXAMPLE)
    assert ctx.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert ctx.span_id == "b7ad6b7169203331"
    assert ctx.sampled
    assert ctx.to_traceparent() == SPEC_EXAMPLE


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(contexts)
def test_format_then_parse_is_identity(ctx: obs.TraceContext) -> None:
    text = ctx.to_traceparent()
    assert len(text) == 55
    assert obs.TraceContext.from_traceparent(text) == ctx


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_trace_context_error(text: str) -> None:
    error: obs.TraceContextError | None = None
    try:
        ctx = obs.TraceContext.from_traceparent(text)
    except obs.TraceContextError as exc:
        error = exc
    if error is not None:
        assert error.field
    else:
        assert ctx.to_traceparent() == text[:55]


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(contexts, st.integers(0, 54), st.sampled_from("GZ-_ x"))
def test_corrupting_one_character_is_rejected(ctx: obs.TraceContext, pos: int, bad: str) -> None:
    text = ctx.to_traceparent()
    if text[pos] == bad:
        return
    corrupted = text[:pos] + bad + text[pos + 1 :]
    with pytest.raises(obs.TraceContextError):
        obs.TraceContext.from_traceparent(corrupted)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (SPEC_EXAMPLE[:-2] + "0A", "flags"),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "trace_id"),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "version"),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", "trace_id"),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "span_id"),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g", "flags"),
        (SPEC_EXAMPLE + "-extra", "traceparent"),
        (SPEC_EXAMPLE[:-1], "traceparent"),
        ("00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "traceparent"),
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", "traceparent"),
        ("00-" + "a" * 300, "traceparent"),
    ],
)
def test_spec_violations_are_rejected_naming_the_field(header: str, field: str) -> None:
    with pytest.raises(obs.TraceContextError) as info:
        obs.TraceContext.from_traceparent(header)
    assert info.value.field == field


def test_a_future_version_with_extra_fields_keeps_the_known_ones() -> None:
    ctx = obs.TraceContext.from_traceparent("cc" + SPEC_EXAMPLE[2:] + "-what-the-future-holds")
    assert ctx.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert ctx.to_traceparent() == SPEC_EXAMPLE


def test_new_contexts_are_random_and_children_share_the_trace() -> None:
    a, b = obs.TraceContext.new(), obs.TraceContext.new()
    assert a.trace_id != b.trace_id
    child = a.child()
    assert child.trace_id == a.trace_id
    assert child.span_id != a.span_id
    assert not obs.TraceContext.new(sampled=False).sampled


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"trace_id": "xyz", "span_id": "b7ad6b7169203331"}, "trace_id"),
        ({"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7"}, "span_id"),
        (
            {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331", "flags": 256},
            "flags",
        ),
        (
            {
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "span_id": "b7ad6b7169203331",
                "tracestate": "x" * 600,
            },
            "tracestate",
        ),
    ],
)
def test_constructor_validates_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(obs.TraceContextError) as info:
        obs.TraceContext(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
