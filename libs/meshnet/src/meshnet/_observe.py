"""meshnet's metrics and logs (through `obs`), shared by every server and client in a process by default."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

import obs

__all__ = ["MeshnetMetrics", "default_metrics", "transport_log"]

transport_log = obs.get_logger("meshnet.transport")
"""Structured log of refusals and connection errors. Never given key material (obs also redacts)."""


class MeshnetMetrics:
    """Counters of the transport, declared through `obs.Metrics("meshnet")`:

    - ``mycelium_meshnet_handshakes_refused_total{reason}``: refusals, by one of `REFUSAL_REASONS`
    - ``mycelium_meshnet_handshakes_accepted_total{side}``: ``client`` / ``server``
    - ``mycelium_meshnet_decode_errors_total{kind}``: malformed frames after the handshake
    - ``mycelium_meshnet_peers_connected_count``: live authenticated streams
    - ``mycelium_meshnet_peers_dropped_total{reason}``: live streams closed by a trust change

    Pass ``registry`` (a prometheus ``CollectorRegistry``) to isolate them, e.g. one per test or node;
    declaring twice on one registry returns the same metrics, so instances are cheap.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        metrics = obs.Metrics("meshnet", registry=registry)
        self._refused = metrics.counter(
            "handshakes_refused", "Handshakes refused, by reason", labels=("reason",)
        )
        self._accepted = metrics.counter(
            "handshakes_accepted", "Handshakes accepted, by side", labels=("side",)
        )
        self._decode = metrics.counter(
            "decode_errors", "Malformed frames received after the handshake, by kind", labels=("kind",)
        )
        self._peers = metrics.gauge("peers_connected", "Live authenticated connections", unit="count")
        self._dropped = metrics.counter(
            "peers_dropped", "Live connections closed because new credentials refuse them", labels=("reason",)
        )

    def handshake_refused(self, reason: str) -> None:
        self._refused.labels(reason=reason).inc()

    def handshake_accepted(self, side: str) -> None:
        self._accepted.labels(side=side).inc()

    def decode_error(self, kind: str) -> None:
        self._decode.labels(kind=kind).inc()

    def peer_dropped(self, reason: str) -> None:
        self._dropped.labels(reason=reason).inc()

    def peer_opened(self) -> None:
        self._peers.inc()

    def peer_closed(self) -> None:
        self._peers.dec()


_default: MeshnetMetrics | None = None


def default_metrics() -> MeshnetMetrics:
    """The process-wide metrics on obs's default registry (created on first use)."""
    global _default
    if _default is None:
        _default = MeshnetMetrics()
    return _default
