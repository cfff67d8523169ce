"""The bundled KeyValueStore: every ordered operation answered, snapshots the same at replicas that
applied the same operations (restored ones included), malformed snapshots refused."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import bftconsensus as b

OPS = [b"put a 1", b"put b 2", b"put c 3", b"del a", b"put a 4", b"put b 5", b"get a", b"del zz", b"bogus"]


def test_operations_answer_and_never_raise() -> None:
    kv = b.KeyValueStore()
    assert [kv.apply(op) for op in OPS] == [
        b"ok",
        b"ok",
        b"ok",
        b"ok",
        b"ok",
        b"ok",
        b"4",
        b"missing",
        b"error: expected 'put <key> <value>', 'get <key>' or 'del <key>'",
    ]


def test_replicas_that_applied_the_same_operations_snapshot_the_same_bytes_restored_or_not() -> None:
    first, second = b.KeyValueStore(), b.KeyValueStore()
    for op in OPS[:4]:
        first.apply(op)
        second.apply(op)
    joined = b.KeyValueStore()
    joined.restore(first.snapshot())  # a replica that caught up by state transfer at this point
    for op in OPS[4:]:
        for kv in (first, second, joined):
            kv.apply(op)
    assert first.snapshot() == second.snapshot() == joined.snapshot()
    assert joined.data == {b"b": b"5", b"c": b"3", b"a": b"4"}
    restored = b.KeyValueStore()
    restored.restore(first.snapshot())
    assert restored.snapshot() == first.snapshot()
    assert restored.data == first.data


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_a_truncated_snapshot_is_refused(cut: int) -> None:
    kv = b.KeyValueStore()
    kv.apply(b"put key value")
    with pytest.raises(b.BftConsensusError, match="malformed"):
        b.KeyValueStore().restore(kv.snapshot()[:-cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_restore_or_raise_the_librarys_error(data: bytes) -> None:
    kv = b.KeyValueStore()
    try:
        kv.restore(data)
    except b.BftConsensusError:
        return
    assert kv.snapshot() == data  # what was accepted is exactly what it reproduces


def test_a_snapshot_that_lists_a_key_twice_is_refused() -> None:
    entry = (1).to_bytes(4, "big") + b"k" + (1).to_bytes(4, "big") + b"v"
    with pytest.raises(b.BftConsensusError, match="repeated"):
        b.KeyValueStore().restore(entry + entry)
