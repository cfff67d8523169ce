"""Two-phase convergence: planner decisions, and a real migration with a running workload."""

from __future__ import annotations

import os

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dram import (
    BackupCore,
    BackupServer,
    CooperativeThrottle,
    DramConfigError,
    GiveUp,
    Iterate,
    MemoryRegion,
    MigrationConfig,
    MigrationPlanner,
    PrimaryCore,
    PrimaryReplicator,
    ReplicationConfig,
    StopAndCopy,
    choose_tracker,
    connect_tcp,
)


def test_stops_and_copies_once_the_rest_fits_the_downtime_target() -> None:
    p = MigrationPlanner(MigrationConfig(downtime_target=0.3, margin=1.0))
    assert isinstance(p.observe(100 << 20, 100 << 20), Iterate)  # 1 s of data left
    d = p.observe(20 << 20, 100 << 20)  # 0.2 s
    assert isinstance(d, StopAndCopy)
    assert d.expected_downtime == pytest.approx(0.2)


def test_throttles_harder_when_not_converging_like_auto_converge() -> None:
    p = MigrationPlanner(MigrationConfig(stall_rounds=2))
    throttles = [p.observe(500 << 20, 100 << 20) for _ in range(7)]
    values = [d.throttle for d in throttles if isinstance(d, Iterate)]
    assert values[0] == 0.0
    assert values[-1] == pytest.approx(0.4)  # 0.2 after 2 stalled rounds, +0.1 per 2 more


def test_gives_up_after_max_rounds_with_a_reason() -> None:
    p = MigrationPlanner(MigrationConfig(max_rounds=3))
    decisions = [p.observe(1 << 30, 1.0) for _ in range(3)]
    assert isinstance(decisions[-1], GiveUp)
    assert "not converged" in decisions[-1].reason


def test_the_time_budget_grows_with_the_region_as_kubevirts_per_gib_timeout() -> None:
    config = MigrationConfig()
    assert config.completion_timeout(64 << 20) == 15.0  # small regions: the minimum
    assert config.completion_timeout(4 << 30) == pytest.approx(600.0)  # 150 s per GiB
    small = MigrationPlanner(region_bytes=64 << 20)
    big = MigrationPlanner(region_bytes=4 << 30)
    assert isinstance(small.observe(1 << 30, 1.0, elapsed=20.0), GiveUp)
    assert isinstance(big.observe(1 << 30, 1.0, elapsed=20.0), Iterate)  # a first copy still running
    late = big.observe(1 << 30, 1.0, elapsed=601.0)
    assert isinstance(late, GiveUp)
    assert "601.0 s (budget 600.0 s)" in late.reason
    with pytest.raises(DramConfigError, match="completion_timeout_per_gib"):
        MigrationConfig(completion_timeout_per_gib=0)


@given(st.lists(st.tuples(st.integers(0, 1 << 34), st.floats(1.0, 1e10)), min_size=1, max_size=50))
def test_throttle_never_decreases_and_stays_bounded(obs: list[tuple[int, float]]) -> None:
    p = MigrationPlanner()
    last = 0.0
    for remaining, bw in obs:
        d = p.observe(remaining, bw)
        if isinstance(d, Iterate):
            assert last <= d.throttle <= 0.99
            last = d.throttle


def test_bad_config_is_named() -> None:
    with pytest.raises(DramConfigError, match="downtime_target"):
        MigrationConfig(downtime_target=0)


@pytest.mark.integration
def test_live_migration_of_a_busy_region_meets_the_downtime_target() -> None:
    size = 32 << 20

    async def main() -> None:
        image = bytearray(size)
        server = BackupServer(BackupCore("target", memoryview(image), 4096, ReplicationConfig()))
        with MemoryRegion.anonymous(size) as region:
            region.view[:] = os.urandom(1 << 20) * 32
            choice = choose_tracker(region)
            core = PrimaryCore("src", region.pages, ReplicationConfig())
            gate = CooperativeThrottle()
            writes = 0

            async def workload() -> None:  # dirties ~ 8 MiB/s of random pages
                nonlocal writes
                rng = __import__("random").Random(1)
                while True:
                    await gate.gate()
                    for _ in range(20):
                        p = rng.randrange(region.pages)
                        region.view[p * 4096] = writes % 251
                        writes += 1
                    await anyio.sleep(0.01)

            async with anyio.create_task_group() as tg:
                port = await server.listen_tcp(tg)
                async with PrimaryReplicator(
                    region, core, choice.tracker, actuator=gate, scan_interval=0.02
                ) as rep:
                    for i in range(2):
                        await rep.add_connection(
                            f"t/{i}", "target", await connect_tcp("127.0.0.1", port, 1 << 24)
                        )
                    tg.start_soon(workload)
                    with anyio.fail_after(60):
                        result = await rep.migrate("target")
                    assert gate.paused  # the source stays stopped after handover
                    assert bytes(image) == bytes(region.view)  # the target holds the exact memory
                    assert result.downtime < 0.3, result
                    assert writes > 0
                tg.cancel_scope.cancel()

    anyio.run(main)
