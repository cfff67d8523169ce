"""Memory regions: the bytes a tracker watches and a replica mirrors.

A region is an ``mmap`` plus its page size. ``anonymous`` regions are private to this process
(what userfaultfd write-protect tracks best); ``shared`` regions live in a memfd or file so another
process (the workload) can map the same pages while we diff them.
"""

from __future__ import annotations

import mmap
import os

from ._errors import DramConfigError

__all__ = ["MemoryRegion"]

PAGE_SIZE = mmap.PAGESIZE


class MemoryRegion:
    """A page-aligned mapping. Not thread-safe; the owner serialises access."""

    def __init__(
        self, mapping: mmap.mmap, size: int, *, page_size: int, shared: bool, fd: int | None
    ) -> None:
        if size <= 0 or size % page_size:
            raise DramConfigError(f"size must be a positive multiple of page_size={page_size}, got {size}")
        self.mapping = mapping
        self.size = size
        self.page_size = page_size
        self.shared = shared
        self.fd = fd
        self.view = memoryview(mapping)

    @classmethod
    def anonymous(cls, size: int) -> MemoryRegion:
        """Private anonymous memory of this process (trackable with userfaultfd write-protect)."""
        cls._check_size(size)
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        return cls(m, size, page_size=PAGE_SIZE, shared=False, fd=None)

    @classmethod
    def memfd(cls, size: int, name: str = "dram") -> MemoryRegion:
        """A new memfd-backed region; pass ``region.fd`` to a child process to share it."""
        cls._check_size(size)
        fd = os.memfd_create(name, 0)
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        return cls(m, size, page_size=PAGE_SIZE, shared=True, fd=fd)

    @classmethod
    def open_shared(cls, path_or_fd: str | int, size: int) -> MemoryRegion:
        """Map an existing file or fd (e.g. ``/proc/<pid>/fd/<n>`` of a workload's memfd) shared."""
        cls._check_size(size)
        fd = os.open(path_or_fd, os.O_RDWR) if isinstance(path_or_fd, str) else os.dup(path_or_fd)
        if os.fstat(fd).st_size < size:
            os.close(fd)
            raise DramConfigError(f"size {size} exceeds the file's size")
        m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        return cls(m, size, page_size=PAGE_SIZE, shared=True, fd=fd)

    @staticmethod
    def _check_size(size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise DramConfigError(
                f"size must be a positive multiple of the page size {PAGE_SIZE}, got {size}"
            )

    @property
    def pages(self) -> int:
        return self.size // self.page_size

    def read_page(self, page: int) -> bytes:
        off = page * self.page_size
        return bytes(self.view[off : off + self.page_size])

    def write_page(self, page: int, data: bytes) -> None:
        off = page * self.page_size
        self.view[off : off + self.page_size] = data

    def close(self) -> None:
        self.view.release()
        self.mapping.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> MemoryRegion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
