"""Latent Spore gossip messages as plain immutable values (the codec maps them to protobuf)."""

from __future__ import annotations

import enum

import attrs

from spore._record import SporeRecord

__all__ = [
    "Ack",
    "Envelope",
    "MemberState",
    "Nack",
    "Ping",
    "PingReq",
    "PushPull",
    "Update",
]


class MemberState(enum.Enum):
    """SWIM member states. Values match the wire enum."""

    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    LEFT = 4


@attrs.frozen(cache_hash=True)  # a cache key in _codec (full states repeat the same updates)
class Update:
    """A claim about a member. ALIVE carries the member's signed record; the others name it."""

    state: MemberState
    node_id: str
    incarnation: int
    record: SporeRecord | None = None
    from_node: str = ""


@attrs.frozen
class Ping:
    seq: int
    target: str
    on_behalf_of: str = ""


@attrs.frozen
class Ack:
    seq: int


@attrs.frozen
class Nack:
    seq: int


@attrs.frozen
class PingReq:
    seq: int
    target: str


@attrs.frozen
class PushPull:
    join: bool
    reply: bool
    states: tuple[Update, ...]


Body = Ping | Ack | Nack | PingReq | PushPull


@attrs.frozen
class Envelope:
    network_id: str
    sender: str
    body: Body | None  # None: a pure gossip message (only piggybacked updates)
    updates: tuple[Update, ...] = ()
