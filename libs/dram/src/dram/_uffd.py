"""userfaultfd write-protect (async mode) + PAGEMAP_SCAN dirty tracking, through cffi ABI mode.

How it works (Linux >= 6.7): register the region with ``UFFDIO_REGISTER_MODE_WP`` on a userfaultfd
opened with ``UFFD_FEATURE_WP_ASYNC``; the kernel then resolves write faults itself (no handler
thread) by clearing the protection bit, which ``PAGEMAP_SCAN`` reports as ``PAGE_IS_WRITTEN``. One
``PAGEMAP_SCAN`` with ``PM_SCAN_WP_MATCHING`` both lists the written pages and re-protects them,
atomically per page, so a write racing the scan is either in this round or the next.

Constants and struct layouts follow the kernel uapi headers (linux/userfaultfd.h, linux/fs.h);
Debian 12's headers predate PAGEMAP_SCAN, so they are spelled out here and probed at run time.
"""

from __future__ import annotations

import mmap
import os
import platform
from typing import Any

import cffi  # type: ignore[import-untyped]  # no stubs; the FFI surface is Any anyway

from ._errors import TrackerUnavailableError
from ._region import MemoryRegion

__all__ = ["UffdWpTracker", "uffd_wp_available"]

_ffi = cffi.FFI()
_ffi.cdef(
    """
    long syscall(long number, ...);
    int ioctl(int fd, unsigned long request, ...);
    struct uffdio_api { uint64_t api; uint64_t features; uint64_t ioctls; };
    struct uffdio_range { uint64_t start; uint64_t len; };
    struct uffdio_register { struct uffdio_range range; uint64_t mode; uint64_t ioctls; };
    struct uffdio_writeprotect { struct uffdio_range range; uint64_t mode; };
    struct page_region { uint64_t start; uint64_t end; uint64_t categories; };
    struct pm_scan_arg {
        uint64_t size; uint64_t flags; uint64_t start; uint64_t end; uint64_t walk_end;
        uint64_t vec; uint64_t vec_len; uint64_t max_pages; uint64_t category_inverted;
        uint64_t category_mask; uint64_t category_anyof_mask; uint64_t return_mask;
    };
    """
)
_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = _ffi.dlopen(None)
    return _libc


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    """The kernel's _IOC(dir, type, nr, size) encoding (asm-generic; x86, arm64, riscv)."""
    return (direction << 30) | (size << 16) | (kind << 8) | nr


_IOC_WRITE, _IOC_READ = 1, 2
_UFFDIO = 0xAA
UFFD_API = 0xAA
UFFDIO_API = _ioc(_IOC_READ | _IOC_WRITE, _UFFDIO, 0x3F, _ffi.sizeof("struct uffdio_api"))
UFFDIO_REGISTER = _ioc(_IOC_READ | _IOC_WRITE, _UFFDIO, 0x00, _ffi.sizeof("struct uffdio_register"))
UFFDIO_UNREGISTER = _ioc(_IOC_READ, _UFFDIO, 0x01, _ffi.sizeof("struct uffdio_range"))
UFFDIO_WRITEPROTECT = _ioc(_IOC_READ | _IOC_WRITE, _UFFDIO, 0x06, _ffi.sizeof("struct uffdio_writeprotect"))
USERFAULTFD_IOC_NEW = _ioc(0, _UFFDIO, 0x00, 0)
PAGEMAP_SCAN = _ioc(_IOC_READ | _IOC_WRITE, ord("f"), 16, _ffi.sizeof("struct pm_scan_arg"))

UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
PAGE_IS_WRITTEN = 1 << 1
PM_SCAN_WP_MATCHING = 1 << 0
PM_SCAN_CHECK_WPASYNC = 1 << 1

_SYS_USERFAULTFD = {"x86_64": 323, "aarch64": 282, "riscv64": 282}
_VEC_LEN = 4096  # page_region entries per PAGEMAP_SCAN call


def _open_uffd() -> int:
    flags = os.O_CLOEXEC | os.O_NONBLOCK
    nr = _SYS_USERFAULTFD.get(platform.machine())
    if nr is not None:
        fd = int(_lib().syscall(_ffi.cast("long", nr), _ffi.cast("int", flags)))
        if fd >= 0:
            return fd
    try:  # /dev/userfaultfd (Linux >= 6.1) works where the syscall is restricted
        dev = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise TrackerUnavailableError(
            "uffd-wp", f"userfaultfd syscall and /dev/userfaultfd failed: {e}"
        ) from e
    try:
        fd = int(_lib().ioctl(dev, _ffi.cast("unsigned long", USERFAULTFD_IOC_NEW), _ffi.cast("int", flags)))
    finally:
        os.close(dev)
    if fd < 0:
        raise TrackerUnavailableError("uffd-wp", f"USERFAULTFD_IOC_NEW failed: errno {_ffi.errno}")
    return fd


def _ioctl(fd: int, request: int, arg: Any, what: str) -> int:
    rc = int(_lib().ioctl(fd, _ffi.cast("unsigned long", request), arg))
    if rc < 0:
        err = _ffi.errno
        raise TrackerUnavailableError("uffd-wp", f"{what} failed: {os.strerror(err)} (errno {err})")
    return rc


class UffdWpTracker:
    """Dirty tracking of this process's own memory by async userfaultfd write-protect."""

    name = "uffd-wp"

    def __init__(self, region: MemoryRegion) -> None:
        self._region = region
        buf = _ffi.from_buffer(region.mapping)
        self._keep = buf
        self._start = int(_ffi.cast("uintptr_t", buf))
        self._uffd = -1
        self._pagemap = -1
        self._vec = _ffi.new("struct page_region[]", _VEC_LEN)
        self._arg = _ffi.new("struct pm_scan_arg *")
        features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED
        if region.shared:
            features |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM
        try:
            self._uffd = _open_uffd()
            api = _ffi.new("struct uffdio_api *", {"api": UFFD_API, "features": features})
            _ioctl(self._uffd, UFFDIO_API, api, "UFFDIO_API (WP_ASYNC needs Linux >= 6.7)")
            if api.features & UFFD_FEATURE_WP_ASYNC == 0:
                raise TrackerUnavailableError("uffd-wp", "kernel lacks UFFD_FEATURE_WP_ASYNC")
            reg = _ffi.new("struct uffdio_register *")
            reg.range.start = self._start
            reg.range.len = region.size
            reg.mode = UFFDIO_REGISTER_MODE_WP
            _ioctl(self._uffd, UFFDIO_REGISTER, reg, "UFFDIO_REGISTER(WP)")
            self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        wp = _ffi.new("struct uffdio_writeprotect *")
        wp.range.start = self._start
        wp.range.len = self._region.size
        wp.mode = UFFDIO_WRITEPROTECT_MODE_WP
        _ioctl(self._uffd, UFFDIO_WRITEPROTECT, wp, "UFFDIO_WRITEPROTECT")

    def collect(self) -> list[int]:
        """One PAGEMAP_SCAN pass (more if the output vector fills): written pages, re-protected."""
        arg, vec, ps = self._arg, self._vec, self._region.page_size
        end = self._start + self._region.size
        pos = self._start
        dirty: list[int] = []
        while pos < end:
            arg.size = _ffi.sizeof("struct pm_scan_arg")
            arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC
            arg.start = pos
            arg.end = end
            arg.walk_end = 0
            arg.vec = int(_ffi.cast("uintptr_t", vec))
            arg.vec_len = _VEC_LEN
            arg.max_pages = 0
            arg.category_inverted = 0
            arg.category_mask = PAGE_IS_WRITTEN
            arg.category_anyof_mask = 0
            arg.return_mask = PAGE_IS_WRITTEN
            n = _ioctl(self._pagemap, PAGEMAP_SCAN, arg, "PAGEMAP_SCAN (needs Linux >= 6.7)")
            for i in range(n):
                first = (vec[i].start - self._start) // ps
                last = (vec[i].end - self._start) // ps
                dirty.extend(range(first, last))
            walk_end = int(arg.walk_end)
            if walk_end <= pos:
                break
            pos = walk_end
        return dirty

    def close(self) -> None:
        if self._pagemap >= 0:
            os.close(self._pagemap)
            self._pagemap = -1
        if self._uffd >= 0:
            os.close(self._uffd)  # closing the uffd unregisters the range and drops protection
            self._uffd = -1
        if self._keep is not None:
            _ffi.release(self._keep)  # lets the region's mmap close
            self._keep = None


def uffd_wp_available() -> tuple[bool, str]:
    """Probe on a scratch page: register, protect, write, scan. (ok, reason)."""
    try:
        region = MemoryRegion.anonymous(mmap.PAGESIZE)
    except OSError as e:
        return False, f"cannot map a probe page: {e}"
    try:
        tracker = UffdWpTracker(region)
        try:
            tracker.start()
            region.view[0] = 1
            got = tracker.collect()
            if got != [0]:
                return False, f"PAGEMAP_SCAN did not report the probe write (got {got})"
            return True, "userfaultfd WP_ASYNC + PAGEMAP_SCAN work"
        finally:
            tracker.close()
    except TrackerUnavailableError as e:
        return False, e.reason
    finally:
        region.close()
