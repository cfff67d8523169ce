"""The replica boundary: what the volume front end needs from each copy of a volume.

Writes are *submitted* synchronously and completed later (:class:`Completion`): the front end
submits one write to every target replica without yielding in between, so every replica sees
writes to a chunk in the same order (the property DRBD gets from its single ordered stream).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import anyio

from ._chunkstore import ChunkImage, ChunkStore
from ._errors import BlockstoreError, ReplicaUnavailableError

__all__ = ["DONE", "Completion", "Replica", "LocalReplica"]


class Completion:
    """Outcome of a submitted operation: ``await wait()`` returns or raises its error."""

    __slots__ = ("_callbacks", "_error", "_event", "done")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[BaseException | None], None]] | None = None
        self.done = False

    @classmethod
    def finished(cls, error: BaseException | None = None) -> Completion:
        c = cls()
        c.set(error)
        return c

    @property
    def error(self) -> BaseException | None:
        return self._error

    def set(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self._error = error
        self.done = True
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                callback(error)

    def add_done_callback(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(error)`` once the operation finished (now, if it already has).

        Cheaper than a task per waiter: the volume settles a write round from the replicas'
        reader tasks without spawning anything.
        """
        if self.done:
            callback(self._error)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    async def wait(self) -> None:
        if not self.done:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        if self._error is not None:
            raise self._error


# The outcome of every operation that succeeded at submission (an in-process replica's writes):
# one shared object instead of a new completion per write. It is finished, so nothing changes it.
DONE = Completion.finished()


class Replica(Protocol):
    """One copy of a volume, local or on a storage node."""

    @property
    def node_id(self) -> str: ...

    def submit_write(
        self, first_block: int, data: bytes, records: bytes, chunk: int, generation: int
    ) -> Completion: ...

    def submit_zero(self, first_block: int, count: int, chunk: int, generation: int) -> Completion: ...

    async def read(self, first_block: int, count: int) -> tuple[bytes, bytes]: ...

    async def flush(self) -> None: ...

    async def chunk_states(self) -> list[tuple[int, bytes]]: ...

    async def read_chunk(self, chunk: int) -> ChunkImage: ...

    async def write_chunk(self, chunk: int, image: ChunkImage) -> None: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class LocalReplica:
    """A replica in this process, on a local directory (sparse files).

    ``offline`` makes every operation fail with :class:`ReplicaUnavailableError`, like a node that
    went away; it exists so in-process tests and examples can take a replica out and bring it back.
    """

    def __init__(self, node_id: str, directory: Path, size: int, block_size: int, chunk_size: int) -> None:
        self._node_id = node_id
        # In the serving process every write costs the NBD path directly: generations are
        # stored at FLUSH instead of with each write (see ChunkStore's defer_generations).
        self.store = ChunkStore(directory, size, block_size, chunk_size, defer_generations=True)
        self.offline = False

    @property
    def node_id(self) -> str:
        return self._node_id

    def _ensure_online(self) -> None:
        if self.offline:
            raise ReplicaUnavailableError(f"replica {self._node_id} is offline")

    def submit_write(
        self, first_block: int, data: bytes, records: bytes, chunk: int, generation: int
    ) -> Completion:
        try:
            if self.offline:
                raise ReplicaUnavailableError(f"replica {self._node_id} is offline")
            self.store.write(first_block, data, records, chunk, generation)
        except (BlockstoreError, OSError) as exc:
            return Completion.finished(exc)
        return DONE

    def submit_zero(self, first_block: int, count: int, chunk: int, generation: int) -> Completion:
        try:
            self._ensure_online()
            self.store.zero(first_block, count, chunk, generation)
        except (BlockstoreError, OSError) as exc:
            return Completion.finished(exc)
        return Completion.finished()

    async def read(self, first_block: int, count: int) -> tuple[bytes, bytes]:
        self._ensure_online()
        return self.store.read(first_block, count)

    async def flush(self) -> None:
        self._ensure_online()
        self.store.persist_generations()  # in the loop: no race with writes landing meanwhile
        await anyio.to_thread.run_sync(self.store.flush)

    async def chunk_states(self) -> list[tuple[int, bytes]]:
        self._ensure_online()
        return self.store.chunk_states()

    async def read_chunk(self, chunk: int) -> ChunkImage:
        self._ensure_online()
        return self.store.read_chunk(chunk)

    async def write_chunk(self, chunk: int, image: ChunkImage) -> None:
        self._ensure_online()
        self.store.write_chunk(chunk, image)

    async def ping(self) -> None:
        self._ensure_online()

    async def aclose(self) -> None:
        self.store.close()
