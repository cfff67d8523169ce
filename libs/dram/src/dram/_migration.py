"""Planned migration: two-phase convergence, as a pure planner the driver consults each round.

Phase 1 (live): the target is already a replica; keep streaming while the workload runs, until
the bytes the target still lacks can be sent within the downtime target at the measured
bandwidth. If the remaining set stops shrinking (the workload dirties faster than the link
drains), throttle harder, QEMU auto-converge style (20 % first, +10 % per round, at most 99 %).
Phase 2 (stop-and-copy): pause the workload, send the rest, resume on the target.
"""

from __future__ import annotations

import attrs

from ._errors import DramConfigError

__all__ = ["MigrationConfig", "MigrationPlanner", "Iterate", "StopAndCopy", "GiveUp", "MigrationDecision"]


@attrs.frozen
class MigrationConfig:
    downtime_target: float = 0.300  # QEMU's default downtime-limit
    max_rounds: int = 300
    throttle_initial: float = 0.20  # QEMU cpu-throttle-initial
    throttle_increment: float = 0.10  # QEMU cpu-throttle-increment
    throttle_max: float = 0.99  # QEMU max-cpu-throttle
    stall_rounds: int = 2  # rounds without progress before throttling harder
    # stop-and-copy only when the rest fits this share of the target: the bandwidth measured while
    # the workload runs is optimistic and the final scan + flush add time (bench: 1.0 overshot)
    margin: float = 0.5

    def __attrs_post_init__(self) -> None:
        if self.downtime_target <= 0:
            raise DramConfigError(f"downtime_target must be > 0 s, got {self.downtime_target}")
        if not 0 < self.throttle_initial <= self.throttle_max <= 1:
            raise DramConfigError("need 0 < throttle_initial <= throttle_max <= 1")
        if not 0 < self.margin <= 1:
            raise DramConfigError(f"margin must be in (0, 1], got {self.margin}")
        if self.max_rounds < 1 or self.stall_rounds < 1:
            raise DramConfigError("max_rounds and stall_rounds must be >= 1")


@attrs.frozen
class Iterate:
    throttle: float
    expected_downtime: float


@attrs.frozen
class StopAndCopy:
    expected_downtime: float


@attrs.frozen
class GiveUp:
    reason: str


MigrationDecision = Iterate | StopAndCopy | GiveUp


class MigrationPlanner:
    """Feed one observation per round; follow the decision."""

    def __init__(self, config: MigrationConfig | None = None) -> None:
        self.config = config or MigrationConfig()
        self.rounds = 0
        self.throttle = 0.0
        self._best = float("inf")
        self._stalled = 0

    def observe(self, remaining_bytes: int, bandwidth: float, rtt: float = 0.0) -> MigrationDecision:
        """``remaining_bytes``: what the target still lacks; ``bandwidth``: bytes/s to it;
        ``rtt``: seconds until the last acknowledgement comes back (part of the downtime)."""
        self.rounds += 1
        transfer = remaining_bytes / bandwidth if bandwidth > 0 else float("inf")
        expected = transfer + max(0.0, rtt) if remaining_bytes else 0.0
        if remaining_bytes == 0 or expected <= self.config.downtime_target * self.config.margin:
            return StopAndCopy(0.0 if remaining_bytes == 0 else expected)
        if self.rounds >= self.config.max_rounds:
            return GiveUp(
                f"not converged after {self.rounds} rounds: {remaining_bytes} bytes left, "
                f"expected downtime {expected:.3f} s > target {self.config.downtime_target} s"
            )
        if remaining_bytes < self._best * 0.95:
            self._best = remaining_bytes
            self._stalled = 0
        else:
            self._stalled += 1
        if self._stalled >= self.config.stall_rounds:
            self._stalled = 0
            if self.throttle == 0.0:
                self.throttle = self.config.throttle_initial
            else:
                self.throttle = min(self.config.throttle_max, self.throttle + self.config.throttle_increment)
        return Iterate(self.throttle, expected)
