"""dram's metrics through obs (names: mycelium_dram_<what>_<unit>)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import obs

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DramMetrics"]


class DramMetrics:
    """One set of instruments; declaring twice on a registry returns the same ones (obs contract)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        m = obs.Metrics("dram", registry=registry)
        self.buffer_fill = m.gauge("buffer_fill", "Replication buffer fill (0..1)", unit="ratio")
        self.throttle = m.gauge(
            "throttle_intensity", "Throttle fraction applied to the workload", unit="ratio"
        )
        self.paused = m.gauge(
            "emergency_paused", "1 while the workload is stopped because the buffer is full"
        )
        self.lag_bytes = m.gauge(
            "replication_lag", "Bytes a backup still lacks", unit="bytes", labels=("backup",)
        )
        self.lag_seconds = m.gauge(
            "replication_lag", "Age of a backup's oldest unapplied write", unit="seconds", labels=("backup",)
        )
        self.pages_sent = m.counter("pages_sent", "Pages sent to backups")
        self.pages_dropped = m.counter("pages_dropped", "Queued pages evicted for later resync (drop-oldest)")
        self.conn_throughput = m.gauge(
            "connection_throughput",
            "Measured throughput per connection",
            unit="bytes_per_second",
            labels=("conn",),
        )
