"""Actions the sans-I/O cores ask their driver to perform, and the shared replication config."""

from __future__ import annotations

from typing import Any

import attrs

from ._buffer import BufferConfig
from ._errors import DramConfigError

__all__ = [
    "Send",
    "SetThrottle",
    "SetPaused",
    "ReadPages",
    "CloseConnection",
    "SetScanInterval",
    "Promote",
    "FollowPrimary",
    "Action",
    "ReplicationConfig",
]


@attrs.frozen
class Send:
    """Send ``frame`` on connection (or to node) ``dest``."""

    dest: str
    frame: bytes


@attrs.frozen
class SetThrottle:
    """Slow the workload: it may run ``1 - fraction`` of the time."""

    fraction: float


@attrs.frozen
class SetPaused:
    """Emergency pause (True) until the buffer is back below the throttle threshold (False)."""

    paused: bool


@attrs.frozen
class ReadPages:
    """Read the current content of these pages and hand it back via ``pages_dirty`` (resync)."""

    pages: tuple[int, ...]


@attrs.frozen
class CloseConnection:
    dest: str
    reason: str


@attrs.frozen
class SetScanInterval:
    """Latency adaptation chose a new tracker scan interval (seconds)."""

    seconds: float


@attrs.frozen
class Promote:
    """This backup won the election: become primary from its replica (``watermark`` applied)."""

    watermark: int
    epoch: int


@attrs.frozen
class FollowPrimary:
    """Another node is the primary now; join it."""

    node: str
    epoch: int


Action = (
    Send | SetThrottle | SetPaused | ReadPages | CloseConnection | SetScanInterval | Promote | FollowPrimary
)


def _pos(_i: object, a: attrs.Attribute[Any], v: float) -> None:
    if not v > 0:
        raise DramConfigError(f"{a.name} must be > 0, got {v!r}")


@attrs.frozen
class ReplicationConfig:
    """Protocol timing and sizing. Defaults justified in docs/dram.md (QEMU, Remus anchors)."""

    buffer: BufferConfig = attrs.Factory(BufferConfig)
    batch_pages: int = attrs.field(default=256, validator=_pos)  # 1 MiB frames: ~2.5 GB/s codec here
    min_window_bytes: int = attrs.field(default=4 << 20, validator=_pos)
    max_window_bytes: int = attrs.field(default=64 << 20, validator=_pos)
    ack_timeout: float = attrs.field(default=2.0, validator=_pos)
    max_timeouts: int = attrs.field(default=3, validator=_pos)  # consecutive, then the connection is closed
    heartbeat_interval: float = attrs.field(default=0.05, validator=_pos)
    failover_timeout: float = attrs.field(default=1.0, validator=_pos)
    election_timeout: float = attrs.field(default=0.5, validator=_pos)
    throttle_step: float = attrs.field(default=0.02, validator=_pos)  # ignore smaller throttle changes

    def __attrs_post_init__(self) -> None:
        if self.min_window_bytes > self.max_window_bytes:
            raise DramConfigError("min_window_bytes must be <= max_window_bytes")
        if self.failover_timeout <= 2 * self.heartbeat_interval:
            raise DramConfigError("failover_timeout must exceed two heartbeat intervals")
