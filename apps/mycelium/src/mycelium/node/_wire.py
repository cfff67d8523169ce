"""Agent messages on the wire: bounded decoding of frames into the generated protobuf classes."""

from __future__ import annotations

from mycelium._errors import MyceliumError
from mycelium.node._members import MemberRecord
from mycelium.node._pb.agent.v1 import MemberState, Request, Response

MAX_AGENT_FRAME = 1 << 20  # a status with thousands of members stays far below 1 MiB


class AgentDecodeError(MyceliumError):
    """A peer sent a frame that is not a valid agent message."""


def _decode(cls: type[Request] | type[Response], data: bytes) -> Request | Response:
    if len(data) > MAX_AGENT_FRAME:
        raise AgentDecodeError(f"agent frame of {len(data)} bytes exceeds the {MAX_AGENT_FRAME}-byte limit")
    try:
        return cls().parse(data)
    except Exception as exc:  # betterproto raises assorted errors on garbage; all mean "malformed"
        raise AgentDecodeError(f"malformed agent frame: {type(exc).__name__}") from None


def decode_request(data: bytes) -> Request:
    msg = _decode(Request, data)
    assert isinstance(msg, Request)
    return msg


def decode_response(data: bytes) -> Response:
    msg = _decode(Response, data)
    assert isinstance(msg, Response)
    return msg


def record_to_pb(r: MemberRecord) -> MemberState:
    return MemberState(
        node_id=r.node_id,
        name=r.name,
        role=r.role,
        mesh_address=r.mesh_address,
        http_address=r.http_address,
        state=r.state,
        since=r.since,
    )


def record_from_pb(m: MemberState) -> MemberRecord:
    return MemberRecord(m.node_id, m.name, m.role, m.mesh_address, m.http_address, m.state, m.since)
