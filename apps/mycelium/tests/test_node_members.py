"""The agent's member table and wire decoding."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelium.node._members import ALIVE, DEAD, SUSPECT, MemberRecord, MemberTable
from mycelium.node._pb.agent.v1 import NodeStatus, Request
from mycelium.node._wire import MAX_AGENT_FRAME, AgentDecodeError, decode_request, decode_response


def rec(node_id: str) -> MemberRecord:
    return MemberRecord(node_id, node_id, "rhizomorph", f"127.0.0.1:{len(node_id)}", "")


def test_second_hand_members_start_suspect_until_reached() -> None:
    table = MemberTable("me", dead_after=4.0)
    assert table.learn(rec("a"), now=0.0)
    assert table.records["a"].state == SUSPECT
    assert not table.learn(rec("a"), now=1.0)
    assert not table.learn(rec("me"), now=1.0)
    table.succeeded(rec("a"), now=1.0, rtt=0.001)
    assert table.records["a"].state == ALIVE


def test_failures_turn_suspect_then_dead_after_the_bound() -> None:
    table = MemberTable("me", dead_after=4.0)
    table.succeeded(rec("a"), now=10.0, rtt=0.001)
    table.failed("a", now=11.0)
    assert table.records["a"].state == SUSPECT
    table.failed("a", now=14.5)
    assert table.records["a"].state == DEAD
    assert table.records["a"].since == 14.5
    table.succeeded(rec("a"), now=20.0, rtt=0.002)
    assert table.records["a"].state == ALIVE


def test_alive_members_are_ordered_by_round_trip_time() -> None:
    table = MemberTable("me", dead_after=4.0)
    table.succeeded(rec("slow"), now=0.0, rtt=0.5)
    table.succeeded(rec("fast"), now=0.0, rtt=0.01)
    assert [r.node_id for r in table.alive()] == ["fast", "slow"]


def test_a_valid_request_round_trips() -> None:
    req = Request(id=7, hello=NodeStatus(name="n"))
    assert decode_request(bytes(req)) == req


def test_oversized_frames_are_refused_before_parsing() -> None:
    with pytest.raises(AgentDecodeError, match="exceeds"):
        decode_request(b"\x00" * (MAX_AGENT_FRAME + 1))


@given(st.binary(max_size=512))
def test_garbage_never_raises_anything_but_the_decode_error(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(AgentDecodeError):
            decode(data)
