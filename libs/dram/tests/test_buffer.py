"""Replication buffer: coalescing, full policies, lag accounting and the no-silent-loss invariant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dram import BufferConfig, DramConfigError, FullPolicy, LinearCurve, ReplicationBuffer

PS = 16


def page(v: int) -> bytes:
    return v.to_bytes(8, "little") * (PS // 8)


def buf(capacity_pages: int = 8, policy: FullPolicy = FullPolicy.PAUSE, backups: tuple[str, ...] = ("b1",)):
    cfg = BufferConfig(
        capacity_bytes=capacity_pages * PS, page_size=PS, full_policy=policy, curve=LinearCurve(0.5)
    )
    return ReplicationBuffer(cfg, backups)


def test_rewrite_of_a_queued_page_is_coalesced() -> None:
    b = buf()
    b.put(1, page(1), now=0.0)
    b.put(1, page(2), now=1.0)
    out = b.next_for("b1", 10)
    assert [(o.page, o.data) for o in out] == [(1, page(2))]
    assert b.stored_bytes == PS


def test_lag_counts_bytes_and_age_of_oldest_unapplied_write() -> None:
    b = buf()
    b.put(1, page(1), now=10.0)
    b.put(2, page(2), now=11.0)
    lag = b.lag("b1", now=13.0)
    assert (lag.bytes, lag.seconds, lag.replicated_seq) == (2 * PS, 3.0, 0)
    out = b.next_for("b1", 1)
    b.acked("b1", [(o.page, o.seq) for o in out])
    lag = b.lag("b1", now=13.0)
    assert (lag.bytes, lag.seconds, lag.replicated_seq) == (PS, 2.0, 1)


def test_rewrite_while_in_flight_is_resent_after_the_ack_and_holds_the_watermark() -> None:
    b = buf()
    b.put(1, page(1), now=0.0)  # seq 1
    (o,) = b.next_for("b1", 10)
    b.put(1, page(2), now=5.0)  # seq 2 while seq 1 in flight
    assert b.next_for("b1", 10) == []  # one copy in flight per page
    b.acked("b1", [(1, o.seq)])
    lag = b.lag("b1", now=6.0)
    assert (lag.replicated_seq, lag.seconds) == (1, 1.0)
    (o2,) = b.next_for("b1", 10)
    assert o2.data == page(2)
    b.acked("b1", [(1, o2.seq)])
    assert b.lag("b1", 7.0).bytes == 0
    assert b.stored_bytes == 0


def test_failed_connection_pages_are_sent_again() -> None:
    b = buf()
    b.put(1, page(1), 0.0)
    b.put(2, page(2), 0.0)
    sent = b.next_for("b1", 10)
    assert b.next_for("b1", 10) == []
    b.failed("b1", [o.page for o in sent])
    assert sorted(o.page for o in b.next_for("b1", 10)) == [1, 2]


def test_pause_policy_keeps_data_out_and_asks_for_pause_until_below_threshold() -> None:
    b = buf(capacity_pages=4)
    for p in range(4):
        assert b.put(p, page(p), 0.0).stored
    out = b.put(9, page(9), 0.0)
    assert not out.stored
    assert b.must_pause
    assert b.resync_pages(10) == []  # above threshold: nothing re-read yet
    sent = b.next_for("b1", 3)
    b.acked("b1", [(o.page, o.seq) for o in sent])
    assert b.fill < 0.5
    assert b.resync_pages(10) == [9]
    b.put(9, page(9), 1.0)
    (last,) = [o for o in b.next_for("b1", 10) if o.page == 9]
    assert last.data == page(9)


def test_drop_oldest_evicts_and_marks_for_resync() -> None:
    b = buf(capacity_pages=2, policy=FullPolicy.DROP_OLDEST)
    b.put(1, page(1), 0.0)
    b.put(2, page(2), 0.0)
    out = b.put(3, page(3), 0.0)
    assert out.stored
    assert out.dropped == (1,)
    assert not b.must_pause
    assert b.pages_dropped == 1
    assert b.lag("b1", 0.0).replicated_seq == 0  # watermark does not pass the dropped write
    assert sorted(o.page for o in b.next_for("b1", 10)) == [2, 3]


def test_new_backup_needs_every_page_through_resync() -> None:
    b = buf(backups=())
    b.add_backup("fresh", pages=range(3), now=0.0)
    assert b.lag("fresh", 0.0).bytes == 3 * PS
    assert b.resync_pages(10) == [0, 1, 2]


def test_wrong_page_size_is_rejected() -> None:
    with pytest.raises(DramConfigError, match="page_size"):
        buf().put(0, b"x", 0.0)


def test_config_validates_capacity() -> None:
    with pytest.raises(DramConfigError, match="capacity_bytes"):
        BufferConfig(capacity_bytes=10, page_size=4096)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 11)),
        st.tuples(st.just("send"), st.sampled_from(["b1", "b2"]), st.integers(1, 4)),
        st.tuples(st.just("ack"), st.sampled_from(["b1", "b2"]), st.integers(0, 5)),
        st.tuples(st.just("fail"), st.sampled_from(["b1", "b2"])),
        st.tuples(
            st.just("resync"),
        ),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(ops, st.sampled_from(list(FullPolicy)))
def test_replicas_built_from_acks_hold_every_write_up_to_the_watermark(
    script: list[tuple], policy: FullPolicy
) -> None:
    """Model check: apply acked pages to replica dicts; every write <= watermark must be there."""
    b = buf(capacity_pages=5, policy=policy, backups=("b1", "b2"))
    memory: dict[int, tuple[int, int]] = {}  # page -> (seq, value) of its latest write
    history: list[tuple[int, int, int]] = []  # (seq, page, value)
    replicas: dict[str, dict[int, tuple[int, bytes]]] = {"b1": {}, "b2": {}}
    inflight: dict[str, list] = {"b1": [], "b2": []}
    last_wm = {"b1": 0, "b2": 0}
    value = 0
    for i, op in enumerate(script):
        now = float(i)
        if op[0] == "put":
            value += 1
            outcome = b.put(op[1], page(value), now)
            memory[op[1]] = (outcome.seq, value)
            history.append((outcome.seq, op[1], value))
        elif op[0] == "send":
            inflight[op[1]].extend(b.next_for(op[1], op[2]))
        elif op[0] == "ack" and inflight[op[1]]:
            o = inflight[op[1]].pop(op[2] % len(inflight[op[1]]))
            prev = replicas[op[1]].get(o.page)
            if prev is None or prev[0] < o.seq:
                replicas[op[1]][o.page] = (o.seq, o.data)
            b.acked(op[1], [(o.page, o.seq)])
        elif op[0] == "fail":
            b.failed(op[1], [o.page for o in inflight[op[1]]])
            inflight[op[1]] = []
        elif op[0] == "resync":
            for p in b.resync_pages(3):
                outcome = b.put(p, page(memory[p][1]), now)  # re-read current content
                memory[p] = (outcome.seq, memory[p][1])
        assert b.stored_bytes <= b.config.capacity_bytes
        for name in ("b1", "b2"):
            lag = b.lag(name, now)
            assert lag.replicated_seq >= last_wm[name], "watermark never moves back"
            last_wm[name] = lag.replicated_seq
            # every page's latest write with seq <= watermark is on the replica (or something newer)
            latest_le: dict[int, int] = {}
            for seq, p, v in history:
                if seq <= lag.replicated_seq:
                    latest_le[p] = v
            for p, v in latest_le.items():
                got = replicas[name].get(p)
                assert got is not None, (name, p)
                got_value = int.from_bytes(got[1][:8], "little")
                assert got_value >= v
            if lag.bytes == 0:
                assert lag.replicated_seq == b.seq
