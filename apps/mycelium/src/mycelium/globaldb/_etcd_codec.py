"""Translation between the store's values (:mod:`._model`) and etcd's v3 protobuf messages.

Also the bounded gRPC codec: a reply larger than the configured limit is refused before it is
parsed, and a reply that does not parse becomes a :class:`GlobalDBError`, never a decoder crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import betterproto
from grpclib.encoding.proto import ProtoCodec

from ._errors import GlobalDBError
from ._model import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    EventType,
    Get,
    KeyValue,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
)
from ._pb import etcdserverpb as pb
from ._pb import mvccpb
from ._wire import RawMessage

__all__ = [
    "BoundedCodec",
    "kv_from_pb",
    "event_from_pb",
    "range_request",
    "put_request",
    "delete_request",
    "txn_request",
    "txn_result",
]


class BoundedCodec(ProtoCodec):
    """grpclib's protobuf codec with a size check before decoding untrusted replies."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, RawMessage):
            return message.data
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self.max_message_bytes:
            raise GlobalDBError(
                f"etcd sent a {len(data)}-byte reply, over the client's max_message_bytes="
                f"{self.max_message_bytes}; narrow the range (limit=) or raise the limit"
            )
        if message_type is RawMessage:
            return RawMessage(data)
        try:
            return message_type.FromString(data)
        except Exception as exc:  # betterproto raises assorted errors on malformed input
            raise GlobalDBError(f"malformed {message_type.__name__} from etcd: {exc}") from exc


def kv_from_pb(kv: mvccpb.KeyValue) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _opt_kv(kv: mvccpb.KeyValue | None) -> KeyValue | None:
    if kv is None or not betterproto.serialized_on_wire(kv) or not kv.key:
        return None
    return kv_from_pb(kv)


def event_from_pb(ev: mvccpb.Event) -> Event:
    kind = EventType.DELETE if ev.type == mvccpb.EventEventType.DELETE else EventType.PUT
    return Event(kind, kv_from_pb(ev.kv), _opt_kv(ev.prev_kv))


def range_request(op: Get, revision: int = 0) -> pb.RangeRequest:
    return pb.RangeRequest(
        key=op.range.key,
        range_end=op.range.range_end,
        limit=op.limit,
        revision=revision,
        keys_only=op.keys_only,
        count_only=op.count_only,
    )


def put_request(op: Put) -> pb.PutRequest:
    return pb.PutRequest(key=op.key, value=op.value, lease=op.lease, prev_kv=op.prev_kv)


def delete_request(op: Delete) -> pb.DeleteRangeRequest:
    return pb.DeleteRangeRequest(key=op.range.key, range_end=op.range.range_end, prev_kv=op.prev_kv)


# betterproto enum members look like plain ints to mypy, hence Any.
_RESULT: dict[CompareOp, Any] = {
    CompareOp.EQUAL: pb.CompareCompareResult.EQUAL,
    CompareOp.NOT_EQUAL: pb.CompareCompareResult.NOT_EQUAL,
    CompareOp.LESS: pb.CompareCompareResult.LESS,
    CompareOp.GREATER: pb.CompareCompareResult.GREATER,
}
_TARGET: dict[CompareTarget, Any] = {
    CompareTarget.VERSION: pb.CompareCompareTarget.VERSION,
    CompareTarget.CREATE: pb.CompareCompareTarget.CREATE,
    CompareTarget.MOD: pb.CompareCompareTarget.MOD,
    CompareTarget.VALUE: pb.CompareCompareTarget.VALUE,
    CompareTarget.LEASE: pb.CompareCompareTarget.LEASE,
}


def _compare(c: Compare) -> pb.Compare:
    msg = pb.Compare(result=_RESULT[c.op], target=_TARGET[c.target], key=c.key)
    if isinstance(c.operand, bytes):
        msg.value = c.operand
    elif c.target is CompareTarget.VERSION:
        msg.version = c.operand
    elif c.target is CompareTarget.CREATE:
        msg.create_revision = c.operand
    elif c.target is CompareTarget.MOD:
        msg.mod_revision = c.operand
    else:
        msg.lease = c.operand
    return msg


def _op(op: Op) -> pb.RequestOp:
    if isinstance(op, Get):
        return pb.RequestOp(request_range=range_request(op))
    if isinstance(op, Put):
        return pb.RequestOp(request_put=put_request(op))
    return pb.RequestOp(request_delete_range=delete_request(op))


def txn_request(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> pb.TxnRequest:
    return pb.TxnRequest(
        compare=[_compare(c) for c in compare],
        success=[_op(o) for o in success],
        failure=[_op(o) for o in failure],
    )


def range_result(resp: pb.RangeResponse, revision: int) -> RangeResult:
    return RangeResult(tuple(kv_from_pb(kv) for kv in resp.kvs), resp.count, resp.more, revision)


def _op_result(resp: pb.ResponseOp, revision: int) -> OpResult:
    name, value = betterproto.which_one_of(resp, "response")
    if name == "response_range":
        assert isinstance(value, pb.RangeResponse)
        return range_result(value, revision)
    if name == "response_put":
        assert isinstance(value, pb.PutResponse)
        return PutResult(revision, _opt_kv(value.prev_kv))
    if name == "response_delete_range":
        assert isinstance(value, pb.DeleteRangeResponse)
        return DeleteResult(revision, value.deleted, tuple(kv_from_pb(kv) for kv in value.prev_kvs))
    raise GlobalDBError(f"etcd answered a txn op with an unexpected {name or 'empty'} response")


def txn_result(resp: pb.TxnResponse) -> TxnResult:
    rev = resp.header.revision
    return TxnResult(resp.succeeded, rev, tuple(_op_result(r, rev) for r in resp.responses))
