"""Measure what this machine offers (CPU, memory, disk, load) from /proc and the filesystem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mycelium.node._roles import Capacity


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(data_dir: Path, bandwidth_bps: int = 0) -> Capacity:
    """A snapshot of capacity. Load is the 1-minute load average per CPU, capped at 1."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        load = min(1.0, os.getloadavg()[0] / cpus)
    except OSError:
        load = 0.0
    try:
        disk = shutil.disk_usage(data_dir).free
    except OSError:
        disk = 0
    return Capacity(
        cpus=cpus, memory_bytes=_meminfo_available(), disk_bytes=disk, bandwidth_bps=bandwidth_bps, load=load
    )
