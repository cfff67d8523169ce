"""Sans-I/O replication decisions: who gets a write, when it is acknowledged, whom to read from.

No I/O and no clock here: the async :class:`~blockstore.Volume` and the simulator both drive
these objects with events (ack, failure, latency sample) and act on what they answer.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from ._errors import InsufficientReplicasError
from ._spec import WritePolicy

__all__ = ["ReplicaHealth", "RoundOutcome", "WriteRound", "ReplicaSetState"]


class ReplicaHealth(enum.Enum):
    HEALTHY = "healthy"  # in the write set and serves reads
    REBUILDING = "rebuilding"  # in the write set, catching up; serves no reads
    DOWN = "down"  # out of the write set until it answers again and is rebuilt


class RoundOutcome(enum.Enum):
    PENDING = "pending"
    ACKED = "acked"
    FAILED = "failed"


class WriteRound:
    """One write sent to ``targets``; decides when the client may be told "done".

    ``all``: acknowledged once every target answered, at least ``min_replicas`` of them with
    success (failed targets are dropped from the write set, not waited for). ``quorum``:
    acknowledged as soon as ``min_replicas`` succeeded. Failed as soon as success is impossible.
    """

    __slots__ = ("acked", "failed", "pending", "policy")

    def __init__(self, targets: Iterable[str], policy: WritePolicy) -> None:
        self.pending = set(targets)
        self.acked: set[str] = set()
        self.failed: set[str] = set()
        self.policy = policy

    def ack(self, node: str) -> RoundOutcome:
        if node in self.pending:
            self.pending.discard(node)
            self.acked.add(node)
        return self.outcome

    def fail(self, node: str) -> RoundOutcome:
        if node in self.pending:
            self.pending.discard(node)
            self.failed.add(node)
        return self.outcome

    @property
    def outcome(self) -> RoundOutcome:
        need = self.policy.min_replicas
        if len(self.acked) + len(self.pending) < need:
            return RoundOutcome.FAILED
        if self.policy.ack == "quorum":
            return RoundOutcome.ACKED if len(self.acked) >= need else RoundOutcome.PENDING
        return RoundOutcome.PENDING if self.pending else RoundOutcome.ACKED


class ReplicaSetState:
    """Health and speed of each replica of one volume."""

    def __init__(self, nodes: Sequence[str], policy: WritePolicy, alpha: float = 0.2) -> None:
        self.policy = policy
        self.health = dict.fromkeys(nodes, ReplicaHealth.HEALTHY)
        self.latency = dict.fromkeys(nodes, 0.0)
        self._alpha = alpha

    def write_targets(self, placement: Sequence[str]) -> list[str]:
        """Live replicas of a chunk; refuses (raises) below the policy's minimum."""
        health = self.health
        targets = [n for n in placement if health[n] is not ReplicaHealth.DOWN]
        if len(targets) < self.policy.min_replicas:
            raise InsufficientReplicasError(
                f"only {len(targets)} of {len(placement)} replicas are live; "
                f"policy.min_replicas={self.policy.min_replicas}"
            )
        return targets

    def read_candidates(self, placement: Sequence[str], exclude: Iterable[str] = ()) -> list[str]:
        """Healthy replicas of a chunk, fastest (lowest smoothed latency) first."""
        skip = set(exclude)
        healthy = [n for n in placement if self.health[n] is ReplicaHealth.HEALTHY and n not in skip]
        healthy.sort(key=self.latency.__getitem__)
        return healthy

    def observe(self, node: str, seconds: float) -> None:
        old = self.latency[node]
        self.latency[node] = seconds if old == 0.0 else old + self._alpha * (seconds - old)

    def mark_down(self, node: str) -> bool:
        """Take ``node`` out of the write set; True when that is news."""
        changed = self.health[node] is not ReplicaHealth.DOWN
        self.health[node] = ReplicaHealth.DOWN
        return changed

    def mark_rebuilding(self, node: str) -> None:
        self.health[node] = ReplicaHealth.REBUILDING

    def mark_healthy(self, node: str) -> None:
        self.health[node] = ReplicaHealth.HEALTHY

    def nodes_in(self, health: ReplicaHealth) -> list[str]:
        return [n for n, h in self.health.items() if h is health]
