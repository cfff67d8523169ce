"""Throttle actuators on real processes: cgroup v1 CPU quota, SIGSTOP/SIGCONT duty cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from dram import (
    CgroupV1CpuActuator,
    CooperativeThrottle,
    DramConfigError,
    QmpActuator,
    SignalDutyCycleActuator,
    cgroup_cpu_available,
)

BUSY = [sys.executable, "-c", "import time\nwhile True: pass"]


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def busy() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(BUSY)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.integration
def test_cgroup_v1_quota_limits_a_busy_process(busy: subprocess.Popen[bytes]) -> None:
    kind, why = cgroup_cpu_available()
    if kind != "v1" or os.geteuid() != 0:
        pytest.skip(f"needs root and a cgroup v1 cpu controller: {why}")
    act = CgroupV1CpuActuator(busy.pid)
    try:

        async def go() -> None:
            await act.set_throttle(0.8)

        anyio.run(go)
        assert act.quota_us == int(act.period_us * 0.2)
        c0, t0 = _cpu_seconds(busy.pid), time.monotonic()
        time.sleep(1.0)
        share = (_cpu_seconds(busy.pid) - c0) / (time.monotonic() - t0)
        assert share < 0.45, f"process still got {share:.0%} of a CPU under a 20% quota"

        async def pause() -> None:
            await act.set_paused(True)

        anyio.run(pause)
        assert act.quota_us == 1000
    finally:
        act.close()
    assert not act.group.exists()


@pytest.mark.integration
def test_signal_duty_cycle_stops_the_process_part_of_the_time(busy: subprocess.Popen[bytes]) -> None:
    act = SignalDutyCycleActuator(busy.pid)
    states: list[str] = []

    async def go() -> None:
        await act.set_throttle(0.7)
        async with anyio.create_task_group() as tg:
            tg.start_soon(act.run)
            for _ in range(60):
                await anyio.sleep(0.005)
                states.append(_stat(busy.pid)[0])
            tg.cancel_scope.cancel()

    anyio.run(go)
    assert act.stops > 3
    assert "T" in states  # seen stopped
    assert _stat(busy.pid)[0] != "T"  # left running


def test_cooperative_throttle_sleeps_its_share_and_pauses() -> None:
    gate = CooperativeThrottle()

    async def go() -> float:
        await gate.set_throttle(0.5)
        busy = 0.0
        for _ in range(100):
            await gate.gate()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.002:
                pass
            busy += time.monotonic() - t0
        return gate.slept / busy

    # at fraction 0.5 the gate sleeps about as long as the workload ran (10 ms per 10 ms slice)
    assert 0.5 < anyio.run(go) < 1.5

    async def paused() -> bool:
        await gate.set_paused(True)
        with anyio.move_on_after(0.05):
            await gate.gate()
            return True
        return False

    assert anyio.run(paused) is False


def test_actuators_refuse_bad_input() -> None:
    with pytest.raises(DramConfigError, match="another process"):
        SignalDutyCycleActuator(os.getpid())
    with pytest.raises(DramConfigError, match="fraction"):
        anyio.run(CooperativeThrottle().set_throttle, 1.5)


@pytest.mark.integration
def test_qmp_actuator_pauses_and_resumes_a_real_qemu(tmp_path: Path) -> None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 not installed")
    sock = tmp_path / "qmp.sock"
    proc = subprocess.Popen(
        [
            qemu,
            "-machine",
            "none",
            "-display",
            "none",
            "-nodefaults",
            "-qmp",
            f"unix:{sock},server=on,wait=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), "QEMU did not open its QMP socket"

        async def go() -> list[str]:
            act = QmpActuator(str(sock))
            await act.open()
            try:
                seen = [await act.status()]
                await act.set_paused(True)
                seen.append(await act.status())
                await act.set_paused(False)
                seen.append(await act.status())
                return seen
            finally:
                await act.aclose()

        assert anyio.run(go) == ["running", "paused", "running"]
    finally:
        proc.kill()
        proc.wait()
