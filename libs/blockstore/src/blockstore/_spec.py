"""Volume geometry and write policy: the one source of truth for a volume's shape."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import attrs

from ._errors import ConfigError

__all__ = ["VolumeSpec", "WritePolicy", "DEFAULT_CHUNK_SIZE", "DEFAULT_BLOCK_SIZE"]

DEFAULT_BLOCK_SIZE = 4096
# Ceph RBD's object size: big enough that per-chunk metadata is small, small enough that a rebuild
# after a short outage copies little.
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _power_of_two(lo: int, hi: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if not (lo <= value <= hi) or value & (value - 1):
            raise ConfigError(f"{attribute.name}={value}: must be a power of two between {lo} and {hi}")

    return check


def _check_name(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _NAME.fullmatch(value):
        raise ConfigError(f"{attribute.name}={value!r}: must match {_NAME.pattern}")


@attrs.frozen
class WritePolicy:
    """When a write is acknowledged.

    ``ack="all"``: after every live replica of the chunk wrote it (DRBD protocol C; Ceph's primary
    acknowledging after all replicas). ``ack="quorum"``: after ``min_replicas`` wrote it; the rest
    catch up in the background. In both modes I/O is refused (EIO) when fewer than
    ``min_replicas`` replicas of the chunk are live (Ceph's ``min_size``).
    """

    ack: Literal["all", "quorum"] = attrs.field(default="all")
    min_replicas: int = attrs.field(default=2)

    @ack.validator
    def _ack(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in ("all", "quorum"):
            raise ConfigError(f"ack={value!r}: must be 'all' or 'quorum'")

    @min_replicas.validator
    def _min(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ConfigError(f"min_replicas={value}: must be at least 1")


@attrs.frozen
class VolumeSpec:
    """Shape of a volume. ``size`` must be a multiple of ``block_size``."""

    name: str = attrs.field(validator=_check_name)
    size: int = attrs.field()
    block_size: int = attrs.field(default=DEFAULT_BLOCK_SIZE, validator=_power_of_two(512, 65536))
    chunk_size: int = attrs.field(default=DEFAULT_CHUNK_SIZE, validator=_power_of_two(4096, 64 << 20))
    replicas: int = attrs.field(default=3)
    # Default: ack after all live replicas, refuse I/O below min(2, replicas) live copies.
    policy: WritePolicy = attrs.field(
        default=attrs.Factory(lambda self: WritePolicy(min_replicas=min(2, self.replicas)), takes_self=True)
    )

    @size.validator
    def _size(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value <= 0 or value > 1 << 50:
            raise ConfigError(f"size={value}: must be between 1 byte and 1 PiB")

    @replicas.validator
    def _replicas(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 1 <= value <= 9:
            raise ConfigError(f"replicas={value}: must be between 1 and 9")

    def __attrs_post_init__(self) -> None:
        if self.size % self.block_size:
            raise ConfigError(f"size={self.size}: must be a multiple of block_size={self.block_size}")
        if self.chunk_size < self.block_size:
            raise ConfigError(f"chunk_size={self.chunk_size}: must be >= block_size={self.block_size}")
        if self.policy.min_replicas > self.replicas:
            raise ConfigError(
                f"policy.min_replicas={self.policy.min_replicas}: must be <= replicas={self.replicas}"
            )

    @property
    def blocks(self) -> int:
        return self.size // self.block_size

    @property
    def blocks_per_chunk(self) -> int:
        return self.chunk_size // self.block_size

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk_size)

    def chunk_blocks(self, chunk: int) -> tuple[int, int]:
        """First block and block count of ``chunk`` (the last chunk may be short)."""
        first = chunk * self.blocks_per_chunk
        return first, min(self.blocks_per_chunk, self.blocks - first)
