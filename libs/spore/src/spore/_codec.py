"""Bounded encoders/decoders between spore values and protobuf bytes.

Every decoder checks the input length BEFORE parsing, then field lengths and repeated counts
after, and turns every failure (truncation, bad UTF-8, unknown enum, wrong oneof) into
`DecodeError`. Nothing else escapes a decoder, whatever the bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

import attrs

from spore._errors import DecodeError
from spore._messages import Ack, Body, Envelope, MemberState, Nack, Ping, PingReq, PushPull, Update
from spore._pb.spore import v1 as pb
from spore._record import Capabilities, RecordLimits, Role, SporeRecord
from spore._wire import Writer, fields, read_bytes, read_str, read_uint

__all__ = [
    "MessageLimits",
    "decode_envelope",
    "decode_record",
    "encode_envelope",
    "encode_record",
    "record_from_pb",
    "record_to_pb",
]

_K = TypeVar("_K")
_V = TypeVar("_V")
_U32 = 2**32
_U64 = 2**64


@attrs.frozen
class MessageLimits:
    """Bounds for gossip datagrams. A push/pull of N members is ~N x 300 bytes."""

    max_message_bytes: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(1024))
    max_updates: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    max_states: int = attrs.field(default=8192, validator=attrs.validators.ge(1))
    record: RecordLimits = attrs.field(factory=RecordLimits)


_DEFAULT_RECORD_LIMITS = RecordLimits()
_DEFAULT_MESSAGE_LIMITS = MessageLimits()


def record_to_pb(r: SporeRecord) -> pb.SporeRecord:
    c = r.capabilities
    return pb.SporeRecord(
        node_id=r.node_id,
        public_key=r.public_key,
        network_id=r.network_id,
        role=pb.Role(r.role.value),
        addresses=list(r.addresses),
        capabilities=pb.Capabilities(c.cpu_millicores, c.memory_bytes, c.storage_bytes, c.bandwidth_bps),
        services=list(r.services),
        incarnation=r.incarnation,
        expires_at_ms=r.expires_at_ms,
        signature=r.signature,
        network_signature=r.network_signature,
    )


def _check_str(name: str, value: str, limits: RecordLimits) -> None:
    if len(value) > limits.max_string:
        raise DecodeError(
            f"{name} is {len(value)} characters, at most {limits.max_string} allowed", "oversized"
        )


def record_from_pb(m: pb.SporeRecord, limits: RecordLimits) -> SporeRecord:
    """Check every bound of one parsed record and build the value."""
    if len(m.addresses) > limits.max_addresses:
        raise DecodeError(
            f"addresses has {len(m.addresses)} entries, at most {limits.max_addresses} allowed", "oversized"
        )
    if len(m.services) > limits.max_services:
        raise DecodeError(
            f"services has {len(m.services)} entries, at most {limits.max_services} allowed", "oversized"
        )
    _check_str("node_id", m.node_id, limits)
    _check_str("network_id", m.network_id, limits)
    for a in m.addresses:
        _check_str("address", a, limits)
    for s in m.services:
        _check_str("service", s, limits)
    if len(m.public_key) != 32:
        raise DecodeError(f"public_key must be 32 bytes, got {len(m.public_key)}")
    if len(m.signature) != 64:
        raise DecodeError(f"signature must be 64 bytes, got {len(m.signature)}")
    if len(m.network_signature) not in (0, 64):
        raise DecodeError(f"network_signature must be empty or 64 bytes, got {len(m.network_signature)}")
    size = (
        len(m.node_id) + len(m.network_id) + 32 + 128 + 48
        + sum(len(a) + 2 for a in m.addresses) + sum(len(s) + 2 for s in m.services)
    )  # fmt: skip
    if size > limits.max_record_bytes:
        raise DecodeError(f"record is ~{size} bytes, at most {limits.max_record_bytes} allowed", "oversized")
    role_value = int(m.role)
    if role_value not in (1, 2, 3):
        raise DecodeError(f"role must be SCLEROTIUM, RHIZOMORPH or HYPHA, got {role_value}")
    caps = m.capabilities
    if caps.cpu_millicores >= _U32 or max(caps.memory_bytes, caps.storage_bytes, caps.bandwidth_bps) >= _U64:
        raise DecodeError("capabilities out of range")
    return SporeRecord(
        node_id=m.node_id,
        public_key=bytes(m.public_key),
        network_id=m.network_id,
        role=Role(role_value),
        addresses=tuple(m.addresses),
        capabilities=Capabilities(
            caps.cpu_millicores, caps.memory_bytes, caps.storage_bytes, caps.bandwidth_bps
        ),
        services=tuple(m.services),
        incarnation=m.incarnation,
        expires_at_ms=m.expires_at_ms,
        signature=bytes(m.signature),
        network_signature=bytes(m.network_signature),
    )


# Records are immutable and gossip relays the same ones over and over; betterproto is pure Python
# and slow, so each distinct record is encoded once and each distinct byte string decoded once.
_CACHE_MAX = 16384
_encoded: OrderedDict[SporeRecord, bytes] = OrderedDict()
_decoded: OrderedDict[tuple[bytes, RecordLimits], SporeRecord] = OrderedDict()


def _remember(cache: OrderedDict[_K, _V], key: _K, value: _V) -> _V:
    cache[key] = value
    if len(cache) > _CACHE_MAX:
        cache.popitem(last=False)
    return value


def encode_record(record: SporeRecord) -> bytes:
    hit = _encoded.get(record)
    if hit is not None:
        return hit
    return _remember(_encoded, record, bytes(record_to_pb(record)))


def decode_record(data: bytes, limits: RecordLimits | None = None) -> SporeRecord:
    """Decode one record from untrusted bytes (bounded; raises only `DecodeError`)."""
    limits = limits or _DEFAULT_RECORD_LIMITS
    if len(data) > limits.max_record_bytes:
        raise DecodeError(
            f"record is {len(data)} bytes, at most {limits.max_record_bytes} allowed", "oversized"
        )
    key = (bytes(data), limits)
    hit = _decoded.get(key)
    if hit is not None:
        return hit
    try:
        m = pb.SporeRecord().parse(data)
    except Exception as exc:  # betterproto raises many types on malformed input
        raise DecodeError(f"malformed record: {type(exc).__name__}") from None
    try:
        record = record_from_pb(m, limits)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"malformed record: {type(exc).__name__}") from None
    return _remember(_decoded, key, record)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(key: bytes, value: bytes) -> bytes:
    return key + _varint(len(value)) + value if value else b""


_record_fields: OrderedDict[SporeRecord, bytes] = OrderedDict()
# Whole updates, both ways: a node's full state repeats the same ~N updates (from_node = itself)
# in every push/pull, and in the simulator every receiver decodes the same bytes. Keyed by the
# exact value / exact bytes (+ limits), so a hit returns what a fresh encode/decode would.
_UPDATE_CACHE_MAX = 32768
_encoded_updates: OrderedDict[Update, bytes] = OrderedDict()
_decoded_updates: OrderedDict[tuple[bytes, RecordLimits], Update] = OrderedDict()


def _update_bytes(u: Update) -> bytes:
    """One `Update` message, the same bytes `Writer` would produce (field order 1..5), built by
    concatenation: full-state push/pulls encode ~N of these per message."""
    hit = _encoded_updates.get(u)
    if hit is not None:
        return hit
    parts = [b"\x08" + _varint(u.state.value)]  # state is 1..4, never the omitted zero
    if u.record is not None:
        field = _record_fields.get(u.record)
        if field is None:
            field = _remember(_record_fields, u.record, _len_field(b"\x12", encode_record(u.record)))
        parts.append(field)
    parts.append(_len_field(b"\x1a", u.node_id.encode()))
    if u.incarnation:
        parts.append(b"\x20" + _varint(u.incarnation))
    parts.append(_len_field(b"\x2a", u.from_node.encode()))
    data = b"".join(parts)
    _encoded_updates[u] = data
    if len(_encoded_updates) > _UPDATE_CACHE_MAX:
        _encoded_updates.popitem(last=False)
    return data


def _read_update(data: bytes, limits: RecordLimits) -> Update:
    key = (data, limits)
    hit = _decoded_updates.get(key)
    if hit is not None:
        return hit
    u = _parse_update(data, limits)
    _decoded_updates[key] = u
    if len(_decoded_updates) > _UPDATE_CACHE_MAX:
        _decoded_updates.popitem(last=False)
    return u


def _parse_update(data: bytes, limits: RecordLimits) -> Update:
    state_value, record_bytes, node_id, incarnation, from_node = 0, b"", "", 0, ""
    for number, value in fields(data):
        if number == 1:
            state_value = read_uint(number, value, 32)
        elif number == 2:
            record_bytes = read_bytes(number, value)
        elif number == 3:
            node_id = read_str(number, value, limits.max_string)
        elif number == 4:
            incarnation = read_uint(number, value, 64)
        elif number == 5:
            from_node = read_str(number, value, limits.max_string)
    if state_value not in (1, 2, 3, 4):
        raise DecodeError(f"update state must be ALIVE, SUSPECT, DEAD or LEFT, got {state_value}")
    state = MemberState(state_value)
    record = decode_record(record_bytes, limits) if record_bytes else None
    if state is MemberState.ALIVE and record is None:
        raise DecodeError("an ALIVE update must carry the member's record")
    if record is not None:
        node_id, incarnation = record.node_id, record.incarnation
    return Update(state, node_id, incarnation, record, from_node)


def encode_envelope(env: Envelope) -> bytes:
    """Encode one gossip datagram (protobuf `spore.v1.Envelope`)."""
    w = Writer()
    w.str_(1, env.network_id)
    w.str_(2, env.sender)
    body = env.body
    b = Writer()
    if isinstance(body, Ping):
        b.uint(1, body.seq)
        b.str_(2, body.target)
        b.str_(3, body.on_behalf_of)
        w.message(3, b)
    elif isinstance(body, Ack):
        b.uint(1, body.seq)
        w.message(4, b)
    elif isinstance(body, Nack):
        b.uint(1, body.seq)
        w.message(5, b)
    elif isinstance(body, PingReq):
        b.uint(1, body.seq)
        b.str_(2, body.target)
        w.message(6, b)
    elif isinstance(body, PushPull):
        b.uint(1, int(body.join))
        b.uint(2, int(body.reply))
        for u in body.states:
            b.bytes_(3, _update_bytes(u), always=True)
        w.message(7, b)
    for u in env.updates:
        w.bytes_(8, _update_bytes(u), always=True)
    return bytes(w.buf)


def decode_envelope(data: bytes, limits: MessageLimits | None = None) -> Envelope:
    """Decode one gossip datagram from untrusted bytes (bounded; raises only `DecodeError`)."""
    limits = limits or _DEFAULT_MESSAGE_LIMITS
    if len(data) > limits.max_message_bytes:
        raise DecodeError(
            f"message is {len(data)} bytes, at most {limits.max_message_bytes} allowed", "oversized"
        )
    try:
        return _read_envelope(data, limits)
    except DecodeError:
        raise
    except Exception as exc:  # a bug in a bound check must still surface as a decode error
        raise DecodeError(f"malformed message: {type(exc).__name__}") from None


def _read_seq_body(data: bytes) -> int:
    seq = 0
    for number, value in fields(data):
        if number == 1:
            seq = read_uint(number, value, 32)
    return seq


def _read_envelope(data: bytes, limits: MessageLimits) -> Envelope:
    rl = limits.record
    network_id, sender = "", ""
    body: Body | None = None
    updates: list[Update] = []
    for number, value in fields(data):
        if number == 1:
            network_id = read_str(number, value, rl.max_string)
        elif number == 2:
            sender = read_str(number, value, rl.max_string)
        elif number == 3:
            seq, target, behalf = 0, "", ""
            for n, v in fields(read_bytes(number, value)):
                if n == 1:
                    seq = read_uint(n, v, 32)
                elif n == 2:
                    target = read_str(n, v, rl.max_string)
                elif n == 3:
                    behalf = read_str(n, v, rl.max_string)
            body = Ping(seq, target, behalf)
        elif number == 4:
            body = Ack(_read_seq_body(read_bytes(number, value)))
        elif number == 5:
            body = Nack(_read_seq_body(read_bytes(number, value)))
        elif number == 6:
            seq, target = 0, ""
            for n, v in fields(read_bytes(number, value)):
                if n == 1:
                    seq = read_uint(n, v, 32)
                elif n == 2:
                    target = read_str(n, v, rl.max_string)
            body = PingReq(seq, target)
        elif number == 7:
            join = reply = False
            states: list[Update] = []
            for n, v in fields(read_bytes(number, value)):
                if n == 1:
                    join = bool(read_uint(n, v, 64))
                elif n == 2:
                    reply = bool(read_uint(n, v, 64))
                elif n == 3:
                    if len(states) >= limits.max_states:
                        raise DecodeError(
                            f"push_pull.states exceeds {limits.max_states} entries", "oversized"
                        )
                    states.append(_read_update(read_bytes(n, v), rl))
            body = PushPull(join, reply, tuple(states))
        elif number == 8:
            if len(updates) >= limits.max_updates:
                raise DecodeError(f"updates exceeds {limits.max_updates} entries", "oversized")
            updates.append(_read_update(read_bytes(number, value), rl))
    return Envelope(network_id, sender, body, tuple(updates))
