"""obs metrics for the Latent Spore: members by state, probes, suspicions, refuted suspicions,
rejected records by reason, bytes sent. The core keeps plain counters (it must not do I/O);
`SporeMetrics.sync` turns their growth into Prometheus counter increments."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

import obs
from spore._gossip import LatentSpore
from spore._messages import MemberState

__all__ = ["SporeMetrics"]

_COUNTERS = (
    ("probes", "Direct probes sent"),
    ("probes_failed", "Probes that got no ack, direct or indirect, within the period"),
    ("indirect_probes", "Indirect probe requests sent"),
    ("suspicions", "Members this node suspected after a failed probe"),
    ("suspicions_refuted", "Suspected members that proved alive (false suspicions refuted)"),
    ("refutations", "Times this node refuted a suspicion about itself"),
    ("declared_dead", "Members this node declared dead when a suspicion timed out"),
    ("messages_sent", "Gossip messages sent"),
    ("updates_quarantined", "Updates ignored because their sender awaits confirmation"),
)


class SporeMetrics:
    """One per node (it remembers what it already exported for that node's core)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        m = obs.Metrics("spore", registry=registry)
        self._counters = {name: m.counter(name, doc, labels=("network",)) for name, doc in _COUNTERS}
        self._bytes = m.counter("sent", "Gossip bytes sent", labels=("network",), unit="bytes")
        self._rejected = m.counter(
            "records_rejected", "Records and messages rejected, by reason", labels=("network", "reason")
        )
        self._members = m.gauge(
            "members", "Members in this node's view, by state", labels=("network", "state")
        )
        self._health = m.gauge(
            "local_health", "Lifeguard local health score (0 = healthy)", labels=("network",)
        )
        self._last: dict[str, int] = {}

    def member_changed(self, core: LatentSpore) -> None:
        counts = {s: 0 for s in MemberState}
        for member in core.members.values():
            counts[member.state] += 1
        for state, n in counts.items():
            self._members.labels(network=core.trust.network_id, state=state.name.lower()).set(n)

    def sync(self, core: LatentSpore) -> None:
        net = core.trust.network_id
        stats = core.stats
        for name, _doc in _COUNTERS:
            self._bump(name, getattr(stats, name), self._counters[name].labels(network=net))
        self._bump("bytes_sent", stats.bytes_sent, self._bytes.labels(network=net))
        for reason, value in stats.rejected.items():
            self._bump(f"rejected:{reason}", value, self._rejected.labels(network=net, reason=reason))
        self._health.labels(network=net).set(core.awareness)

    def _bump(self, key: str, value: int, child: Counter) -> None:
        delta = value - self._last.get(key, 0)
        if delta > 0:
            child.inc(delta)
            self._last[key] = value
