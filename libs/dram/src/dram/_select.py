"""Automatic tracker choice, cheapest first, with every rejection's reason logged.

* memory written by this process: userfaultfd async write-protect + PAGEMAP_SCAN;
* memory written by another process: soft-dirty bits of that process (if the kernel has them);
* anything else, or when those are unavailable: hash-diff over a shared mapping.
"""

from __future__ import annotations

import os

import attrs

import obs

from ._errors import DramConfigError, TrackerUnavailableError
from ._region import MemoryRegion
from ._softdirty import SoftDirtyTracker
from ._tracker import DirtyTracker, HashDiffTracker
from ._uffd import UffdWpTracker

__all__ = ["TrackerChoice", "choose_tracker"]

_log = obs.get_logger("dram.tracker")


@attrs.frozen
class TrackerChoice:
    tracker: DirtyTracker
    rejected: dict[str, str]  # tracker name -> why it was not used


def choose_tracker(
    region: MemoryRegion,
    *,
    writer_pid: int | None = None,
    writer_address: int | None = None,
    prefer: str | None = None,
) -> TrackerChoice:
    """Pick the cheapest tracker that works for ``region``.

    ``writer_pid``: the process whose writes must be seen (None: this process).
    ``writer_address``: where that process maps the region (for soft-dirty).
    ``prefer``: force one of ``uffd-wp``, ``soft-dirty``, ``hash-diff`` (error if unavailable).
    """
    if prefer not in (None, "uffd-wp", "soft-dirty", "hash-diff"):
        raise DramConfigError(f"prefer must be one of uffd-wp, soft-dirty, hash-diff or None, got {prefer!r}")
    own = writer_pid is None or writer_pid == os.getpid()
    rejected: dict[str, str] = {}
    order = [prefer] if prefer else (["uffd-wp", "hash-diff"] if own else ["soft-dirty", "hash-diff"])
    if not own:
        rejected["uffd-wp"] = "writes come from another process; userfaultfd sees only this process's writes"
    for name in order:
        tracker: DirtyTracker
        try:
            if name == "uffd-wp":
                if not own:
                    raise TrackerUnavailableError(name, rejected["uffd-wp"])
                tracker = UffdWpTracker(region)
            elif name == "soft-dirty":
                if writer_address is None or writer_pid is None:
                    raise TrackerUnavailableError(name, "needs writer_pid and writer_address")
                tracker = SoftDirtyTracker(writer_pid, writer_address, region.size)
            else:
                if not own and not region.shared:
                    raise TrackerUnavailableError(name, "region is private: another process cannot share it")
                tracker = HashDiffTracker(region)
        except TrackerUnavailableError as e:
            rejected[name] = e.reason
            if prefer:
                raise
            continue
        _log.info("tracker_chosen", tracker=tracker.name, rejected=rejected, region_bytes=region.size)
        return TrackerChoice(tracker, rejected)
    raise TrackerUnavailableError("any", f"no tracker works here: {rejected}")
