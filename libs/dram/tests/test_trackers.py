"""Dirty-page trackers against real memory: each must report exactly the pages written."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest

from dram import (
    DirtyTracker,
    DramConfigError,
    HashDiffTracker,
    MemoryRegion,
    TrackerUnavailableError,
    UffdWpTracker,
    choose_tracker,
    soft_dirty_available,
    uffd_wp_available,
)

PS = mmap.PAGESIZE
UFFD_OK, UFFD_WHY = uffd_wp_available()


def _pagemap_bit55_after_write() -> bool:
    """Independent check of the soft-dirty detection: read the bit ourselves."""
    import ctypes
    import struct

    m = mmap.mmap(-1, PS, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m[0] = 1
        with open("/proc/self/clear_refs", "wb") as f:
            f.write(b"4")
        m[0] = 2
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(addr // PS * 8)
            (entry,) = struct.unpack("<Q", f.read(8))
        return bool(entry >> 55 & 1)
    finally:
        m.close()


@pytest.fixture(params=["anonymous", "memfd"])
def region(request: pytest.FixtureRequest) -> Iterator[MemoryRegion]:
    r = MemoryRegion.anonymous(64 * PS) if request.param == "anonymous" else MemoryRegion.memfd(64 * PS)
    yield r
    r.close()


def _touch(region: MemoryRegion, pages: list[int]) -> None:
    for p in pages:
        region.view[p * PS + 17] = (region.view[p * PS + 17] + 1) % 256


def _trackers(region: MemoryRegion) -> list[DirtyTracker]:
    out: list[DirtyTracker] = [HashDiffTracker(region), HashDiffTracker(region, digest="crc32")]
    if UFFD_OK:
        out.append(UffdWpTracker(region))
    return out


def test_each_tracker_reports_exactly_the_written_pages(region: MemoryRegion) -> None:
    for tracker in _trackers(region):
        tracker.start()
        assert tracker.collect() == []
        _touch(region, [3, 4, 40])
        assert tracker.collect() == [3, 4, 40]
        assert tracker.collect() == []  # re-armed
        region.view[63 * PS : 64 * PS] = os.urandom(PS)
        _touch(region, [0])
        assert tracker.collect() == [0, 63]
        tracker.close()


def test_hash_diff_sees_writes_of_another_process() -> None:
    with MemoryRegion.memfd(16 * PS) as region:
        tracker = HashDiffTracker(region)
        tracker.start()
        assert region.fd is not None
        pid = os.fork()
        if pid == 0:  # child: write through its own mapping of the same memfd
            m = mmap.mmap(region.fd, region.size, flags=mmap.MAP_SHARED)
            m[5 * PS] = 7
            m[9 * PS + 100] = 7
            os._exit(0)
        os.waitpid(pid, 0)
        assert tracker.collect() == [5, 9]


@pytest.mark.skipif(not UFFD_OK, reason=f"uffd-wp unavailable: {UFFD_WHY}")
def test_uffd_write_protect_is_chosen_for_own_memory() -> None:
    with MemoryRegion.anonymous(8 * PS) as region:
        choice = choose_tracker(region)
        assert choice.tracker.name == "uffd-wp"
        choice.tracker.close()


def test_hash_diff_is_chosen_for_another_process_without_soft_dirty() -> None:
    with MemoryRegion.memfd(8 * PS) as region:
        choice = choose_tracker(region, writer_pid=1, writer_address=0)
        assert "uffd-wp" in choice.rejected
        if soft_dirty_available()[0]:
            assert choice.tracker.name == "soft-dirty"
        else:
            assert choice.tracker.name.startswith("hash-diff")
            assert "CONFIG_MEM_SOFT_DIRTY" in choice.rejected["soft-dirty"]


def test_soft_dirty_detection_matches_what_the_kernel_does() -> None:
    ok, reason = soft_dirty_available()
    assert ok == _pagemap_bit55_after_write(), reason
    if not ok:
        with pytest.raises(TrackerUnavailableError, match="soft-dirty"):
            choose_tracker(MemoryRegion.anonymous(PS), writer_pid=os.getpid(), prefer="soft-dirty")


def test_bad_tracker_options_are_named() -> None:
    with MemoryRegion.anonymous(PS) as region:
        with pytest.raises(DramConfigError, match="digest"):
            HashDiffTracker(region, digest="md5")
        with pytest.raises(DramConfigError, match="prefer"):
            choose_tracker(region, prefer="magic")
    with pytest.raises(DramConfigError, match="multiple of the page size"):
        MemoryRegion.anonymous(PS + 1)
