"""The dirty-page tracker protocol and the hash-diff tracker that works everywhere."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ._errors import DramConfigError
from ._region import MemoryRegion

__all__ = ["DirtyTracker", "HashDiffTracker", "DIGESTS"]


@runtime_checkable
class DirtyTracker(Protocol):
    """Reports which pages changed since the previous ``collect`` (the first call: since ``start``)."""

    name: str

    def start(self) -> None:
        """Take the baseline: every page counts as clean from now on."""

    def collect(self) -> list[int]:
        """Page indices written since the last collect, ascending; re-arms tracking atomically per page."""

    def close(self) -> None: ...


def _crc32(b: memoryview) -> int:
    return zlib.crc32(b)


def _crc32_adler32(b: memoryview) -> int:
    # Two unrelated 32-bit checks: a changed page goes unseen only if both collide (~2^-64).
    return (zlib.crc32(b) << 32) | zlib.adler32(b)


def _blake2b(b: memoryview) -> int:
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little")


DIGESTS: dict[str, Callable[[memoryview], int]] = {
    "crc32": _crc32,
    "crc32+adler32": _crc32_adler32,
    "blake2b": _blake2b,
}


class HashDiffTracker:
    """Per-page digests compared scan to scan: for memory another process writes (memfd/file).

    Cost is proportional to the region size, not to the dirty set (see bench/bench_dram.py):
    every scan reads every page. Default digest ``crc32+adler32`` (measured ~0.7 s/GiB here;
    ``crc32`` alone ~0.3 s/GiB but a changed page goes unseen with probability 2^-32, so it is
    opt-in). A page changed while it is being digested is caught by the next scan.
    """

    def __init__(self, region: MemoryRegion, digest: str = "crc32+adler32") -> None:
        if digest not in DIGESTS:
            raise DramConfigError(f"digest must be one of {sorted(DIGESTS)}, got {digest!r}")
        self.name = f"hash-diff({digest})"
        self._region = region
        self._fn = DIGESTS[digest]
        self._digests: list[int] = []

    def _scan(self) -> list[int]:
        view, ps, fn = self._region.view, self._region.page_size, self._fn
        return [fn(view[off : off + ps]) for off in range(0, self._region.size, ps)]

    def start(self) -> None:
        self._digests = self._scan()

    def collect(self) -> list[int]:
        if not self._digests:
            self.start()
            return list(range(self._region.pages))
        new = self._scan()
        old = self._digests
        self._digests = new
        return [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]

    def close(self) -> None:
        self._digests = []
