"""Throttle actuators: how a throttle fraction or an emergency pause reaches the workload.

* :class:`CooperativeThrottle` - a workload in this process awaits ``gate()`` between operations
  (used by the demo KV server, and the only choice when tracker and workload share a process);
* :class:`CgroupV1CpuActuator` - CPU quota of another process through cgroup v1
  ``cpu.cfs_quota_us`` (v2 ``cpu.max`` when a v2 hierarchy has the cpu controller);
* :class:`SignalDutyCycleActuator` - SIGSTOP/SIGCONT duty cycle where no cgroup is available;
* :class:`QmpActuator` - QEMU ``stop``/``cont`` over QMP, duty-cycled the same way.

Duty cycling follows QEMU auto-converge: at fraction f the workload sleeps f/(1-f) x slice after
each slice of running time (slice 10 ms), so it gets (1 - f) of the time.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Protocol

import anyio

from ._errors import DramConfigError, DramError

__all__ = [
    "ThrottleActuator",
    "CooperativeThrottle",
    "CgroupV1CpuActuator",
    "SignalDutyCycleActuator",
    "QmpActuator",
    "cgroup_cpu_available",
]

SLICE = 0.010  # QEMU auto-converge's 10 ms slice


def _check_fraction(fraction: float) -> float:
    if not 0.0 <= fraction <= 1.0:
        raise DramConfigError(f"throttle fraction must be in [0, 1], got {fraction!r}")
    return fraction


def sleep_for(fraction: float, slice_seconds: float = SLICE) -> float:
    """Sleep per slice of running so the workload keeps 1 - fraction of the time (capped at 99 %)."""
    f = min(fraction, 0.99)
    return slice_seconds * f / (1.0 - f)


class ThrottleActuator(Protocol):
    async def set_throttle(self, fraction: float) -> None: ...

    async def set_paused(self, paused: bool) -> None: ...


class CooperativeThrottle:
    """For a workload in this process: it awaits :meth:`gate` before each operation."""

    def __init__(self) -> None:
        self.fraction = 0.0
        self.paused = False
        self._resumed = anyio.Event()
        self._resumed.set()
        self._ran_since = time.monotonic()
        self.slept = 0.0

    async def set_throttle(self, fraction: float) -> None:
        self.fraction = _check_fraction(fraction)

    async def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self._resumed = anyio.Event()
        else:
            self._resumed.set()

    async def gate(self) -> None:
        """Return when the workload may run its next operation (never while paused)."""
        if self.fraction > 0 and time.monotonic() - self._ran_since >= SLICE:
            pause = sleep_for(self.fraction)
            await anyio.sleep(pause)
            self.slept += pause
            self._ran_since = time.monotonic()
        while self.paused:  # checked last: a pause that began during the throttle sleep holds
            t0 = time.monotonic()
            await self._resumed.wait()
            self.slept += time.monotonic() - t0
            self._ran_since = time.monotonic()


def cgroup_cpu_available(root: str = "/sys/fs/cgroup") -> tuple[str | None, str]:
    """('v1' | 'v2' | None, reason)."""
    v1 = Path(root, "cpu", "cpu.cfs_quota_us")
    if v1.exists() and os.access(v1.parent, os.W_OK):
        return "v1", f"cgroup v1 cpu controller at {v1.parent}"
    controllers = Path(root, "cgroup.controllers")
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return "v2", "cgroup v2 with the cpu controller"
    return None, "no writable cgroup cpu controller (v1 cpu/ missing, v2 without cpu)"


class CgroupV1CpuActuator:
    """Move ``pid`` into its own cgroup v1 cpu group and cap its quota at (1 - fraction) of a CPU."""

    def __init__(self, pid: int, *, root: str = "/sys/fs/cgroup/cpu", name: str | None = None) -> None:
        self.pid = pid
        self.group = Path(root, name or f"mycelium-dram-{pid}")
        self.group.mkdir(exist_ok=True)
        self.period_us = int((self.group / "cpu.cfs_period_us").read_text())
        self._paused = False
        self._fraction = 0.0
        (self.group / "cgroup.procs").write_text(str(pid))

    def _write_quota(self) -> None:
        if self._paused:
            quota = 1000  # the kernel's minimum quota (1 ms per period): near-stop without freezing
        elif self._fraction <= 0:
            quota = -1
        else:
            quota = max(1000, round(self.period_us * (1.0 - min(self._fraction, 0.99))))
        (self.group / "cpu.cfs_quota_us").write_text(str(quota))

    async def set_throttle(self, fraction: float) -> None:
        self._fraction = _check_fraction(fraction)
        self._write_quota()

    async def set_paused(self, paused: bool) -> None:
        self._paused = paused
        self._write_quota()

    @property
    def quota_us(self) -> int:
        return int((self.group / "cpu.cfs_quota_us").read_text())

    def close(self) -> None:
        """Lift the cap and remove the group (the process goes back to the root group)."""
        (self.group / "cpu.cfs_quota_us").write_text("-1")
        parent = self.group.parent / "cgroup.procs"
        for line in (self.group / "cgroup.procs").read_text().split():
            try:
                parent.write_text(line)
            except OSError:
                continue  # the process exited meanwhile
        with contextlib.suppress(OSError):
            self.group.rmdir()


class _DutyCycle(abc.ABC):
    """Shared duty-cycle loop: ``stop()`` for the sleep share, ``cont()`` for the rest."""

    fraction: float = 0.0
    paused: bool = False

    @abc.abstractmethod
    async def _stop(self) -> None:
        """Stop the workload (SIGSTOP, QMP stop)."""

    @abc.abstractmethod
    async def _cont(self) -> None:
        """Let it run again."""

    async def set_throttle(self, fraction: float) -> None:
        self.fraction = _check_fraction(fraction)

    async def set_paused(self, paused: bool) -> None:
        self.paused = paused
        await (self._stop() if paused else self._cont())

    async def run(self, slice_seconds: float = SLICE) -> None:
        """Run until cancelled (in the owner's task group)."""
        try:
            while True:
                if self.paused or self.fraction <= 0:
                    await anyio.sleep(slice_seconds)
                    continue
                await self._stop()
                await anyio.sleep(sleep_for(self.fraction, slice_seconds))
                if not self.paused:
                    await self._cont()
                await anyio.sleep(slice_seconds)
        finally:
            with anyio.CancelScope(shield=True):
                if not self.paused:
                    await self._cont()


class SignalDutyCycleActuator(_DutyCycle):
    """SIGSTOP/SIGCONT another process: works anywhere, coarser than a CPU quota."""

    def __init__(self, pid: int) -> None:
        if pid == os.getpid():
            raise DramConfigError("pid must be another process: stopping ourselves would stop the replicator")
        self.pid = pid
        self.stops = 0

    async def _stop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stops += 1

    async def _cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


class QmpActuator(_DutyCycle):
    """QEMU over QMP (unix socket): ``stop``/``cont``; connect with :meth:`open`."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._stream: anyio.abc.SocketStream | None = None
        self._buf = b""

    async def open(self) -> None:
        self._stream = await anyio.connect_unix(self.socket_path)
        await self._read()  # greeting
        await self.command("qmp_capabilities")

    async def _read(self) -> dict[str, object]:
        assert self._stream is not None
        while b"\n" not in self._buf:
            chunk = await self._stream.receive(65536)
            self._buf += chunk
            if len(self._buf) > 1 << 20:
                raise DramError("QMP reply larger than 1 MiB")
        line, _, self._buf = self._buf.partition(b"\n")
        value = json.loads(line)
        if not isinstance(value, dict):
            raise DramError(f"unexpected QMP message {value!r}")
        return value

    async def command(self, name: str) -> dict[str, object]:
        if self._stream is None:
            raise DramError("QMP actuator is not open")
        await self._stream.send(json.dumps({"execute": name}).encode() + b"\n")
        while True:
            msg = await self._read()
            if "return" in msg or "error" in msg:
                if "error" in msg:
                    raise DramError(f"QMP {name} failed: {msg['error']}")
                return msg

    async def status(self) -> str:
        """QEMU's run state (``running``, ``paused``, ...) from ``query-status``."""
        reply = await self.command("query-status")
        ret = reply.get("return")
        if not isinstance(ret, dict) or not isinstance(ret.get("status"), str):
            raise DramError(f"unexpected query-status reply {reply!r}")
        return str(ret["status"])

    async def _stop(self) -> None:
        await self.command("stop")

    async def _cont(self) -> None:
        await self.command("cont")

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None
