"""Latency adaptation switches with hysteresis and never flaps inside the band."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dram import DramConfigError, LatencyTuner, LinkMode, TuningConfig


def test_switches_to_high_latency_after_the_hold_time_and_back() -> None:
    t = LatencyTuner(TuningConfig(enter_high_rtt=0.02, leave_high_rtt=0.005, hold=1.0, alpha=1.0))
    assert not t.observe_rtt(0.05, now=0.0)
    assert not t.observe_rtt(0.05, now=0.5)
    assert t.observe_rtt(0.05, now=1.0)
    assert t.mode is LinkMode.HIGH_LATENCY
    assert t.profile.capacity_bytes > TuningConfig().low.capacity_bytes
    assert t.profile.scan_interval > TuningConfig().low.scan_interval
    assert not t.observe_rtt(0.01, now=2.0)  # inside the band: stays
    assert not t.observe_rtt(0.001, now=3.0)
    assert t.observe_rtt(0.001, now=4.0)
    assert t.mode is LinkMode.LOW_LATENCY


def test_a_single_spike_does_not_switch() -> None:
    t = LatencyTuner(TuningConfig(hold=1.0, alpha=1.0))
    t.observe_rtt(0.5, now=0.0)
    t.observe_rtt(0.001, now=0.5)
    t.observe_rtt(0.001, now=2.0)
    assert t.mode is LinkMode.LOW_LATENCY
    assert t.switches == 0


@given(st.lists(st.floats(0.0051, 0.0199), min_size=1, max_size=100))
def test_rtt_inside_the_hysteresis_band_never_switches(rtts: list[float]) -> None:
    t = LatencyTuner(TuningConfig(hold=0.0))
    for i, r in enumerate(rtts):
        t.observe_rtt(r, now=float(i))
    assert t.switches == 0


def test_band_must_be_ordered() -> None:
    with pytest.raises(DramConfigError, match="hysteresis"):
        TuningConfig(enter_high_rtt=0.001, leave_high_rtt=0.01)


def test_primary_core_switches_profile_on_a_slow_link() -> None:
    """A high RTT on the link makes the core ask for longer scans and allow a larger buffer."""
    from dram import BackupCore, BufferConfig, PrimaryCore, ReplicationConfig, Send, SetScanInterval

    cfg = ReplicationConfig(buffer=BufferConfig(capacity_bytes=512 << 20))
    tuning = TuningConfig(hold=0.5, alpha=1.0)
    p = PrimaryCore("p", 16, cfg, tuner=LatencyTuner(tuning))
    b = BackupCore("b", memoryview(bytearray(16 * 4096)), 4096, cfg)
    seen: list[object] = []
    now = 0.0
    for _ in range(12):  # heartbeats answered 50 ms later: a long-distance link
        actions = p.connect("c", "b", now) if now == 0.0 else p.tick(now)
        for a in actions:
            if isinstance(a, Send):
                for reply in b.receive("p", a.frame, now):
                    if isinstance(reply, Send):
                        seen += p.receive("c", reply.frame, now + 0.05)
        now += 0.1
    assert SetScanInterval(tuning.high.scan_interval) in seen
    assert p.tuner.mode is LinkMode.HIGH_LATENCY
    assert p.buffer.config.capacity_bytes == tuning.high.capacity_bytes
