"""Metrics and logs of a volume (obs conventions: ``mycelium_blockstore_<what>_<unit>``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import obs

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["VolumeMetrics"]


class VolumeMetrics:
    """Counters shared by every volume of a registry (declaring twice returns the same metric)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        m = obs.Metrics("blockstore", registry=registry)
        self.bitrot_repaired = m.counter(
            "bitrot_repaired_blocks",
            "Blocks that failed their checksum and were repaired",
            labels=("volume",),
        )
        self.replica_failures = m.counter(
            "replica_failures", "Replicas taken out of the write set", labels=("volume", "node")
        )
        self.rebuilds = m.counter("rebuilds_completed", "Replica rebuilds completed", labels=("volume",))
        self.chunks_copied = m.counter(
            "rebuild_chunks_copied", "Chunks copied by rebuilds (they differed)", labels=("volume",)
        )
        self.chunks_skipped = m.counter(
            "rebuild_chunks_skipped",
            "Chunks a rebuild skipped (equal generation and digest)",
            labels=("volume",),
        )
        self.log = obs.get_logger("blockstore.volume")
