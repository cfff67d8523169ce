"""Partition evidence: which members this node can and cannot reach, and since when.

Fed by direct probe outcomes (the gossip core does it); a report from every node lets an operator
or the app's split-brain policy see the shape of a partition instead of guessing from timeouts.
"""

from __future__ import annotations

import attrs

__all__ = ["PartitionReport", "ReachabilityTracker"]


@attrs.frozen
class PartitionReport:
    node_id: str
    at: float
    reachable: dict[str, float]  # member -> since when it has been reachable
    unreachable: dict[str, float]  # member -> since when it has been unreachable


class ReachabilityTracker:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._state: dict[str, tuple[bool, float]] = {}

    def observe(self, member: str, reachable: bool, now: float) -> None:
        """Record one probe outcome; `since` only moves when reachability flips."""
        prev = self._state.get(member)
        if prev is None or prev[0] != reachable:
            self._state[member] = (reachable, now)

    def forget(self, member: str) -> None:
        self._state.pop(member, None)

    def report(self, now: float) -> PartitionReport:
        ok = {m: since for m, (up, since) in self._state.items() if up}
        bad = {m: since for m, (up, since) in self._state.items() if not up}
        return PartitionReport(self.node_id, now, ok, bad)
