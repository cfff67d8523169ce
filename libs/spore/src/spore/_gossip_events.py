"""Inputs and outputs of the sans-I/O Latent Spore core (`LatentSpore.handle`)."""

from __future__ import annotations

from collections import Counter

import attrs

from spore._messages import MemberState
from spore._record import SporeRecord

__all__ = [
    "Action",
    "CancelTimer",
    "ConfirmPeer",
    "Event",
    "GossipStats",
    "Join",
    "Leave",
    "MemberChanged",
    "Received",
    "Send",
    "SetTimer",
    "Start",
    "TimerFired",
]


# --- events (in) ---
@attrs.frozen
class Start:
    """Arm the periodic timers; join through `contacts` (addresses or node ids) if any."""

    contacts: tuple[str, ...] = ()


@attrs.frozen
class Join:
    contacts: tuple[str, ...]


@attrs.frozen
class Received:
    """`data` arrived from `src`, the transport-authenticated node id of the sender."""

    src: str
    data: bytes


@attrs.frozen
class TimerFired:
    tag: str


@attrs.frozen
class Leave:
    """Announce a graceful leave (members mark us LEFT, not DEAD)."""


@attrs.frozen
class ConfirmPeer:
    """The driver confirmed a direct authenticated connection to `node_id`: lift its quarantine."""

    node_id: str


Event = Start | Join | Received | TimerFired | Leave | ConfirmPeer


# --- actions (out) ---
@attrs.frozen
class Send:
    dst: str
    data: bytes


@attrs.frozen
class SetTimer:
    """(Re-)arm timer `tag` to fire after `delay` seconds; re-arming replaces."""

    tag: str
    delay: float


@attrs.frozen
class CancelTimer:
    tag: str


@attrs.frozen
class MemberChanged:
    """A member changed state (or record) in this node's view."""

    node_id: str
    state: MemberState
    record: SporeRecord


Action = Send | SetTimer | CancelTimer | MemberChanged


@attrs.define
class GossipStats:
    """Plain counters kept by the core; the driver exports them to obs metrics."""

    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    probes: int = 0
    probes_failed: int = 0
    indirect_probes: int = 0
    suspicions: int = 0
    suspicions_refuted: int = 0
    refutations: int = 0
    declared_dead: int = 0
    updates_quarantined: int = 0
    rejected: Counter[str] = attrs.field(factory=Counter)
