"""Soft-dirty tracking through /proc/PID/clear_refs and /proc/PID/pagemap, where the kernel has it.

Needs ``CONFIG_MEM_SOFT_DIRTY``. Detection never assumes: it clears the bits of this process,
writes a probe page and checks that pagemap bit 55 went up. On kernels built without the option
(ours) the bit stays 0 and :func:`soft_dirty_available` says so.

Soft-dirty has an inherent race: a write between reading pagemap and clearing the bits is lost.
So a tracker for another process stops it (SIGSTOP) for the read+clear, like CRIU's pre-dump.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import struct

from ._errors import TrackerUnavailableError

__all__ = ["SoftDirtyTracker", "soft_dirty_available"]

_SOFT_DIRTY_BIT = 1 << 55
_CLEAR_SOFT_DIRTY = b"4"


def _clear(pid: int | str) -> None:
    with open(f"/proc/{pid}/clear_refs", "wb") as f:
        f.write(_CLEAR_SOFT_DIRTY)


def _entries(pid: int | str, address: int, pages: int) -> list[int]:
    page_size = mmap.PAGESIZE
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(address // page_size * 8)
        raw = f.read(pages * 8)
    if len(raw) != pages * 8:
        raise TrackerUnavailableError("soft-dirty", f"short pagemap read ({len(raw)} of {pages * 8} bytes)")
    return list(struct.unpack(f"<{pages}Q", raw))


def soft_dirty_available() -> tuple[bool, str]:
    """Probe this process: clear, write one page, look at bit 55. (ok, reason)."""
    probe = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        probe[0] = 1  # populate
        address = ctypes.addressof(ctypes.c_char.from_buffer(probe))
        try:
            _clear("self")
        except OSError as e:
            return False, f"cannot write /proc/self/clear_refs: {e}"
        probe[0] = 2
        try:
            (entry,) = _entries("self", address, 1)
        except OSError as e:
            return False, f"cannot read /proc/self/pagemap: {e}"
        if entry & _SOFT_DIRTY_BIT:
            return True, "pagemap bit 55 set after a write"
        return False, (
            "pagemap bit 55 (soft-dirty) stayed 0 after a write following clear_refs=4: "
            "kernel built without CONFIG_MEM_SOFT_DIRTY"
        )
    finally:
        probe.close()


class SoftDirtyTracker:
    """Dirty pages of ``[address, address + size)`` in process ``pid`` via soft-dirty bits."""

    name = "soft-dirty"

    def __init__(self, pid: int, address: int, size: int, *, freeze: bool = True) -> None:
        ok, reason = soft_dirty_available()
        if not ok:
            raise TrackerUnavailableError("soft-dirty", reason)
        self._pid = pid
        self._address = address
        self._pages = size // mmap.PAGESIZE
        self._freeze = freeze and pid != os.getpid()

    def start(self) -> None:
        _clear(self._pid)

    def collect(self) -> list[int]:
        if self._freeze:
            os.kill(self._pid, signal.SIGSTOP)
        try:
            entries = _entries(self._pid, self._address, self._pages)
            _clear(self._pid)
        finally:
            if self._freeze:
                os.kill(self._pid, signal.SIGCONT)
        return [i for i, e in enumerate(entries) if e & _SOFT_DIRTY_BIT]

    def close(self) -> None:
        return None
