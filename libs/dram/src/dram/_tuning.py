"""Latency adaptation: pick buffer size and scan interval from measured RTT, with hysteresis.

Low-latency links (same rack) get small buffers and short scan intervals: near-zero RPO, like
Remus' 25 ms epochs. High-latency links get larger buffers and longer intervals so the primary
is not throttled by the link; RPO grows but the workload keeps its speed. A mode switch needs the
smoothed RTT to stay past the *other* threshold for ``hold`` seconds, so a noisy link does not flap.
"""

from __future__ import annotations

import enum

import attrs

from ._errors import DramConfigError

__all__ = ["LinkMode", "TuningConfig", "Profile", "LatencyTuner"]


class LinkMode(enum.Enum):
    LOW_LATENCY = "low_latency"
    HIGH_LATENCY = "high_latency"


@attrs.frozen
class Profile:
    scan_interval: float
    capacity_bytes: int


@attrs.frozen
class TuningConfig:
    enter_high_rtt: float = 0.020  # 20 ms: beyond a metro link
    leave_high_rtt: float = 0.005  # 5 ms: back on a LAN
    hold: float = 2.0
    alpha: float = 0.2  # EWMA weight of a new RTT sample
    low: Profile = Profile(scan_interval=0.025, capacity_bytes=16 << 20)
    high: Profile = Profile(scan_interval=0.25, capacity_bytes=256 << 20)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.leave_high_rtt < self.enter_high_rtt:
            raise DramConfigError("need 0 < leave_high_rtt < enter_high_rtt (the hysteresis band)")
        if not 0 < self.alpha <= 1:
            raise DramConfigError(f"alpha must be in (0, 1], got {self.alpha}")


class LatencyTuner:
    """Feed RTT and bandwidth samples; read ``mode`` / ``profile``. Pure: time is passed in."""

    def __init__(self, config: TuningConfig | None = None) -> None:
        self.config = config or TuningConfig()
        self.mode = LinkMode.LOW_LATENCY
        self.rtt: float | None = None
        self.bandwidth: float | None = None  # bytes / second
        self._crossed_since: float | None = None
        self.switches = 0

    @property
    def profile(self) -> Profile:
        return self.config.low if self.mode is LinkMode.LOW_LATENCY else self.config.high

    def observe_bandwidth(self, bytes_per_second: float) -> None:
        a = self.config.alpha
        self.bandwidth = (
            bytes_per_second if self.bandwidth is None else a * bytes_per_second + (1 - a) * self.bandwidth
        )

    def observe_rtt(self, rtt: float, now: float) -> bool:
        """Record one RTT sample; True when the mode switched."""
        a = self.config.alpha
        self.rtt = rtt if self.rtt is None else a * rtt + (1 - a) * self.rtt
        if self.mode is LinkMode.LOW_LATENCY:
            crossed = self.rtt > self.config.enter_high_rtt
        else:
            crossed = self.rtt < self.config.leave_high_rtt
        if not crossed:
            self._crossed_since = None
            return False
        if self._crossed_since is None:
            self._crossed_since = now
        if now - self._crossed_since < self.config.hold:
            return False
        self.mode = LinkMode.HIGH_LATENCY if self.mode is LinkMode.LOW_LATENCY else LinkMode.LOW_LATENCY
        self._crossed_since = None
        self.switches += 1
        return True
