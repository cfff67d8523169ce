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


_PENDING, _ACKED, _FAILED = RoundOutcome.PENDING, RoundOutcome.ACKED, RoundOutcome.FAILED


class WriteRound:
    """One write sent to ``targets``; decides when the client may be told "done".

    ``all``: acknowledged once every target answered, at least ``min_replicas`` of them with
    success (failed targets are dropped from the write set, not waited for). ``quorum``:
    acknowledged as soon as ``min_replicas`` succeeded. Failed as soon as success is impossible.
    """

    __slots__ = ("_need", "_quorum", "acked", "failed", "pending", "policy")

    def __init__(self, targets: Iterable[str], policy: WritePolicy) -> None:
        self.pending = set(targets)
        self.acked: set[str] = set()
        self.failed: set[str] = set()
        self.policy = policy
        # The policy, read once: the outcome is asked for at every answer of every write.
        self._need = policy.min_replicas
        self._quorum = policy.ack == "quorum"

    def ack(self, node: str) -> RoundOutcome:
        pending = self.pending
        if node in pending:
            pending.discard(node)
            self.acked.add(node)
        return self._outcome()

    def fail(self, node: str) -> RoundOutcome:
        pending = self.pending
        if node in pending:
            pending.discard(node)
            self.failed.add(node)
        return self._outcome()

    @property
    def outcome(self) -> RoundOutcome:
        return self._outcome()

    def _outcome(self) -> RoundOutcome:
        acked = len(self.acked)
        pending = self.pending
        if acked + len(pending) < self._need:
            return _FAILED
        if self._quorum:
            return _ACKED if acked >= self._need else _PENDING
        return _PENDING if pending else _ACKED


class ReplicaSetState:
    """Health and speed of each replica of one volume.

    Change health only through the ``mark_*`` methods: they also invalidate the cached write sets.
    """

    def __init__(self, nodes: Sequence[str], policy: WritePolicy, alpha: float = 0.2) -> None:
        self.policy = policy
        self.health = dict.fromkeys(nodes, ReplicaHealth.HEALTHY)
        self.latency = dict.fromkeys(nodes, 0.0)
        self._alpha = alpha
        # write_targets / healthy by placement, valid until the next health change (they run per
        # write and per read).
        self._targets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._healthy: dict[tuple[str, ...], tuple[str, ...]] = {}

    def write_targets(self, placement: Sequence[str]) -> tuple[str, ...]:
        """Live replicas of a chunk; refuses (raises) below the policy's minimum."""
        key = tuple(placement)
        found = self._targets.get(key)
        if found is not None:
            return found
        health = self.health
        targets = tuple(n for n in key if health[n] is not ReplicaHealth.DOWN)
        if len(targets) < self.policy.min_replicas:
            raise InsufficientReplicasError(
                f"only {len(targets)} of {len(placement)} replicas are live; "
                f"policy.min_replicas={self.policy.min_replicas}"
            )
        self._targets[key] = targets
        return targets

    def healthy(self, placement: Sequence[str]) -> tuple[str, ...]:
        """The healthy replicas of a chunk, in placement order."""
        key = tuple(placement)
        found = self._healthy.get(key)
        if found is None:
            health = self.health
            found = self._healthy[key] = tuple(n for n in key if health[n] is ReplicaHealth.HEALTHY)
        return found

    def nearest(self, placement: Sequence[str]) -> str | None:
        """The first of :meth:`read_candidates` (None when there is none), without building it."""
        healthy = self.healthy(placement)
        if not healthy:
            return None
        return healthy[0] if len(healthy) == 1 else min(healthy, key=self.latency.__getitem__)

    def read_candidates(self, placement: Sequence[str], exclude: Iterable[str] = ()) -> list[str]:
        """Healthy replicas of a chunk, fastest (lowest smoothed latency) first."""
        healthy = list(self.healthy(placement))
        if exclude:
            skip = set(exclude)
            healthy = [n for n in healthy if n not in skip]
        healthy.sort(key=self.latency.__getitem__)
        return healthy

    def observe(self, node: str, seconds: float) -> None:
        old = self.latency[node]
        self.latency[node] = seconds if old == 0.0 else old + self._alpha * (seconds - old)

    def mark_down(self, node: str) -> bool:
        """Take ``node`` out of the write set; True when that is news."""
        changed = self.health[node] is not ReplicaHealth.DOWN
        self._set(node, ReplicaHealth.DOWN)
        return changed

    def mark_rebuilding(self, node: str) -> None:
        self._set(node, ReplicaHealth.REBUILDING)

    def mark_healthy(self, node: str) -> None:
        self._set(node, ReplicaHealth.HEALTHY)

    def _set(self, node: str, health: ReplicaHealth) -> None:
        self.health[node] = health
        self._targets.clear()  # every cached write set and healthy list may have changed
        self._healthy.clear()

    def nodes_in(self, health: ReplicaHealth) -> list[str]:
        return [n for n, h in self.health.items() if h is health]
