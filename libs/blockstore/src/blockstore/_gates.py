"""Per-chunk gates: many writers share a chunk; a rebuild or repair of it runs alone.

A writer holds the chunk's gate from submission until every target answered, so a chunk copy
made under the exclusive gate can never be overtaken by an older in-flight write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

__all__ = ["ChunkGates"]


class ChunkGates:
    def __init__(self) -> None:
        self._inflight: dict[int, int] = {}
        self._exclusive: dict[int, anyio.Event] = {}
        self._drained: dict[int, anyio.Event] = {}

    async def enter_shared(self, chunk: int) -> None:
        while chunk in self._exclusive:
            await self._exclusive[chunk].wait()
        self._inflight[chunk] = self._inflight.get(chunk, 0) + 1

    def is_exclusive(self, chunk: int) -> bool:
        return chunk in self._exclusive

    def try_enter_shared(self, chunk: int) -> bool:
        """Enter without waiting; False (and nothing entered) while the chunk is held exclusively."""
        if chunk in self._exclusive:
            return False
        self._inflight[chunk] = self._inflight.get(chunk, 0) + 1
        return True

    def leave_shared(self, chunk: int) -> None:
        left = self._inflight[chunk] - 1
        if left:
            self._inflight[chunk] = left
            return
        del self._inflight[chunk]
        drained = self._drained.pop(chunk, None)
        if drained is not None:
            drained.set()

    async def _drain(self, chunk: int) -> None:
        while self._inflight.get(chunk):
            event = self._drained.setdefault(chunk, anyio.Event())
            await event.wait()

    @asynccontextmanager
    async def exclusive(self, chunk: int) -> AsyncIterator[None]:
        while chunk in self._exclusive:
            await self._exclusive[chunk].wait()
        mine = anyio.Event()
        self._exclusive[chunk] = mine
        try:
            await self._drain(chunk)
            yield
        finally:
            del self._exclusive[chunk]
            mine.set()

    async def drain_all(self) -> None:
        """Wait until every write in flight now has finished (later writes are not waited for)."""
        for chunk in list(self._inflight):
            await self._drain(chunk)

    def busy_chunks(self) -> set[int]:
        """Chunks with writes in flight right now."""
        return set(self._inflight)
