"""Prometheus metrics (through obs) for replicas run by a driver: the cores stay free of I/O and
the driver reports their state after each event."""

from __future__ import annotations

from typing import Any

import obs
from bftconsensus._replica import Replica

__all__ = ["ReplicaMetrics"]


class ReplicaMetrics:
    """``mycelium_bftconsensus_replica_*`` gauges and counters, labelled by replica id.

    Pass ``registry=CollectorRegistry()`` for an isolated registry (tests, several nodes in one
    process); declaring twice on one registry reuses the same metrics.
    """

    def __init__(self, registry: Any = None) -> None:
        m = obs.Metrics("bftconsensus", registry=registry)
        self.view = m.gauge("replica_view", "Current PBFT view of the replica", labels=("replica",))
        self.executed = m.gauge("replica_executed_seq", "Last executed sequence number", labels=("replica",))
        self.stable = m.gauge("replica_stable_checkpoint_seq", "Last stable checkpoint", labels=("replica",))
        self.members = m.gauge(
            "replica_members", "Replicas in the current membership", labels=("replica",), unit="count"
        )
        self.requests = m.counter(
            "replica_requests_executed", "Client requests executed", labels=("replica",)
        )
        self.view_changes = m.counter(
            "replica_view_changes", "Views entered after view 0", labels=("replica",)
        )
        self._seen: dict[str, tuple[int, int]] = {}
        self._last: dict[str, tuple[int, int, int, int]] = {}
        self._children: dict[str, tuple[Any, ...]] = {}

    def observe(self, replica: Replica) -> None:
        name = replica.me
        state = (replica.view, replica.last_executed, replica.stable_seq, len(replica.members))
        if self._last.get(name) == state:
            return  # most frames change none of these: skip the gauges' locks
        self._last[name] = state
        children = self._children.get(name)
        if children is None:  # labelled children resolved once: observe runs after every event
            children = self._children[name] = tuple(
                m.labels(replica=name)
                for m in (
                    self.view,
                    self.executed,
                    self.stable,
                    self.members,
                    self.requests,
                    self.view_changes,
                )
            )
        view_g, executed_g, stable_g, members_g, requests_c, changes_c = children
        view_g.set(replica.view)
        executed_g.set(replica.last_executed)
        stable_g.set(replica.stable_seq)
        members_g.set(len(replica.members))
        view, done = self._seen.get(name, (0, 0))
        if replica.requests_executed > done:
            requests_c.inc(replica.requests_executed - done)
        if replica.view > view:
            changes_c.inc(replica.view - view)
        self._seen[name] = (replica.view, replica.requests_executed)
