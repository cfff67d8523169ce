"""Planned migration: two-phase convergence, as a pure planner the driver consults each round.

Phase 1 (live): the target is already a replica; keep streaming while the workload runs, until
the bytes the target still lacks can be sent within the downtime target at the measured
bandwidth. If the remaining set stops shrinking (the workload dirties faster than the link
drains), throttle harder, QEMU auto-converge style (20 % first, +10 % per round, at most 99 %).
Phase 2 (stop-and-copy): pause the workload, send the rest, resume on the target.

The planner gives up when phase 1 has run longer than a budget that grows with the region, as
KubeVirt's ``completionTimeoutPerGiB`` (150 s per GiB) does: a fixed round count gave up on a
large region's first copy before it could finish.
"""

from __future__ import annotations

import attrs

from ._errors import DramConfigError

__all__ = ["MigrationConfig", "MigrationPlanner", "Iterate", "StopAndCopy", "GiveUp", "MigrationDecision"]


@attrs.frozen
class MigrationConfig:
    downtime_target: float = 0.300  # QEMU's default downtime-limit
    max_rounds: int | None = None  # an extra cap on rounds; None: only the time budget below
    completion_timeout_per_gib: float = 150.0  # KubeVirt's completionTimeoutPerGiB
    min_completion_timeout: float = 15.0  # the budget of small regions
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
        if (self.max_rounds is not None and self.max_rounds < 1) or self.stall_rounds < 1:
            raise DramConfigError("max_rounds and stall_rounds must be >= 1")
        if not self.completion_timeout_per_gib > 0 or not self.min_completion_timeout > 0:
            raise DramConfigError(
                "completion_timeout_per_gib and min_completion_timeout must be > 0 s, got "
                f"{self.completion_timeout_per_gib} and {self.min_completion_timeout}"
            )

    def completion_timeout(self, region_bytes: int) -> float:
        """Seconds phase 1 may take for a region of ``region_bytes``."""
        return max(self.min_completion_timeout, self.completion_timeout_per_gib * region_bytes / (1 << 30))


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

    def __init__(self, config: MigrationConfig | None = None, *, region_bytes: int = 0) -> None:
        self.config = config or MigrationConfig()
        self.region_bytes = region_bytes  # the driver sets it from its region when left at 0
        self.rounds = 0
        self.throttle = 0.0
        self._best = float("inf")
        self._stalled = 0

    def observe(
        self, remaining_bytes: int, bandwidth: float, rtt: float = 0.0, *, elapsed: float = 0.0
    ) -> MigrationDecision:
        """``remaining_bytes``: what the target still lacks; ``bandwidth``: bytes/s to it;
        ``rtt``: seconds until the last acknowledgement comes back (part of the downtime);
        ``elapsed``: seconds since the migration started (the driver's clock)."""
        self.rounds += 1
        transfer = remaining_bytes / bandwidth if bandwidth > 0 else float("inf")
        expected = transfer + max(0.0, rtt) if remaining_bytes else 0.0
        if remaining_bytes == 0 or expected <= self.config.downtime_target * self.config.margin:
            return StopAndCopy(0.0 if remaining_bytes == 0 else expected)
        budget = self.config.completion_timeout(self.region_bytes)
        out_of_rounds = self.config.max_rounds is not None and self.rounds >= self.config.max_rounds
        if out_of_rounds or elapsed > budget:
            spent = f"{self.rounds} rounds" if out_of_rounds else f"{elapsed:.1f} s (budget {budget:.1f} s)"
            return GiveUp(
                f"not converged after {spent}: {remaining_bytes} bytes left, "
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
