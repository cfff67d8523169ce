"""The hand-written message codec (bftconsensus._messages) and the betterproto code generated from
protos/bftconsensus.proto read and write the same bytes, and the codec's decoder is bounded and
total: any input either parses or raises DecodeError."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import betterproto
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bftconsensus as b
from bftconsensus import _messages as ours
from bftconsensus import _protocodec as codec
from bftconsensus._pb.bftconsensus import v1 as generated

CLASSES = [getattr(ours, name) for name in ours.__all__ if name != "Message"]


def _field_strategy(ftype: int, sub: type[ours.Message] | None) -> st.SearchStrategy[Any]:
    if ftype == codec._U32:
        return st.integers(0, 2**32 - 1)
    if ftype == codec._U64:
        return st.integers(0, 2**64 - 1)
    if ftype == codec._BOOL:
        return st.booleans()
    if ftype == codec._STR:
        return st.text(max_size=12)
    if ftype == codec._BYTES:
        return st.binary(max_size=24)
    if ftype == codec._RSTR:
        return st.lists(st.text(max_size=6), max_size=3)
    assert sub is not None
    inner = st.deferred(lambda: message(sub))
    return inner if ftype == codec._MSG else st.lists(inner, max_size=3)


def message(cls: type[ours.Message]) -> st.SearchStrategy[ours.Message]:
    kwargs = {name: _field_strategy(ftype, sub) for _, name, ftype, sub, _ in cls._SPEC}
    return st.builds(cls, **kwargs)


def to_generated(msg: ours.Message) -> betterproto.Message:
    """The betterproto twin of ``msg``, with the fields that proto3 would leave out left unset."""
    cls = getattr(generated, type(msg).__name__)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(msg):  # type: ignore[arg-type]
        value = getattr(msg, field.name)
        if isinstance(value, ours.Message):
            value = to_generated(value)
        elif isinstance(value, list):
            value = [to_generated(v) if isinstance(v, ours.Message) else v for v in value]
        if value != getattr(type(msg)(), field.name):
            values[field.name] = value  # betterproto writes a sub-message that was set, even empty
    return cls(**values)


any_message = st.sampled_from(CLASSES).flatmap(message)


def test_every_generated_message_has_a_codec_class_with_the_same_fields() -> None:
    names = {n for n in dir(generated) if isinstance(getattr(generated, n), type)}
    names = {n for n in names if issubclass(getattr(generated, n), betterproto.Message)}
    assert names == {c.__name__ for c in CLASSES}
    for cls in CLASSES:
        gen = getattr(generated, cls.__name__)
        assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in dataclasses.fields(gen)]


@settings(max_examples=400, deadline=None)
@given(any_message)
def test_same_bytes_both_ways(msg: ours.Message) -> None:
    theirs = bytes(to_generated(msg))
    assert bytes(msg) == theirs
    limits = b.WireLimits(max_string_chars=1000)
    assert type(msg)().parse(theirs, limits) == msg


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CLASSES), st.binary(max_size=200))
def test_any_bytes_parse_or_raise_decode_error(cls: type[ours.Message], data: bytes) -> None:
    with contextlib.suppress(b.DecodeError):
        cls().parse(data)


@settings(max_examples=300, deadline=None)
@given(any_message, st.data())
def test_mutated_encodings_parse_or_raise_decode_error(msg: ours.Message, data: st.DataObject) -> None:
    raw = bytearray(bytes(msg))
    if raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(raw)))
        raw = raw[:cut]
    with contextlib.suppress(b.DecodeError):
        type(msg)().parse(bytes(raw))


def test_bounds_are_enforced_while_parsing() -> None:
    limits = b.WireLimits(max_frame_bytes=1000, max_string_chars=8, max_repeated=2)
    with pytest.raises(b.DecodeError, match="client"):
        ours.ClientRequest().parse(bytes(ours.ClientRequest(client="x" * 9)), limits)
    three = ours.PrePrepare(requests=[ours.Signed(kind=1)] * 3)
    with pytest.raises(b.DecodeError, match="requests"):
        ours.PrePrepare().parse(bytes(three), limits)
    with pytest.raises(b.DecodeError, match="1000"):
        ours.Signed().parse(bytes(ours.Signed(body=b"x" * 1000)), limits)
    with pytest.raises(b.DecodeError, match="does not fit"):
        ours.Signed().parse(bytes(ours.Checkpoint(seq=2**40)), limits)  # field 1 is uint32 in Signed
