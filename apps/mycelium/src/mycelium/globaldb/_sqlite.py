"""The embedded single-node Global DB: the :class:`KVStore` API on a SQLite file.

It is what ``mycelium up`` uses when no etcd endpoint is given. Calls run on the event loop
thread (each is one short SQLite transaction in WAL mode), which keeps every operation atomic with
respect to the others without locks; watches read the history table when a commit wakes them, so
a slow watcher never buffers unboundedly and resuming from a revision is a plain query.

Several processes may open the same file (``mycelium up`` runs three Sclerotia on one host against
one file). Write transactions take SQLite's write lock up front, so revisions stay unique and
increasing across processes; a call that finds the lock taken is retried with a non-blocking sleep
until ``busy_timeout``. Commits by other processes cannot wake this process's watches, so an idle
watch checks the store revision every ``watch_poll_interval`` and reads the history when it moved.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread

from ._errors import InvalidRequestError, UnavailableError
from ._model import (
    Compare,
    Delete,
    DeleteResult,
    Event,
    Get,
    Key,
    KeyRange,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Op,
    Put,
    PutResult,
    RangeResult,
    StoreStatus,
    TxnResult,
    Value,
    key_range,
)
from ._sqlite_conn import is_busy
from ._sqlite_core import SQLiteCore

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")
#: Longest non-blocking sleep between two attempts at a locked file.
_MAX_BACKOFF = 0.05


class SQLiteStore:
    """A single-node :class:`KVStore` with etcd's revision, txn, watch and lease semantics.

    ``clock`` (seconds, wall-clock by default so lease deadlines survive a restart and agree
    between processes on one host) is injected so tests can expire leases without sleeping;
    ``expiry_interval`` is how often the background task started by ``async with`` revokes expired
    leases (``None``: only on demand and before writes). ``busy_timeout`` bounds how long a call
    waits for another process's write lock before :class:`UnavailableError`;
    ``watch_poll_interval`` is how often an idle watch looks for other processes' commits
    (``None``: only this process's commits wake watches; ``:memory:`` never polls).
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        clock: Callable[[], float] = time.time,
        expiry_interval: float | None = 0.5,
        busy_timeout: float = 5.0,
        watch_poll_interval: float | None = 0.05,
    ) -> None:
        if expiry_interval is not None and expiry_interval <= 0:
            raise InvalidRequestError(f"expiry_interval must be > 0 seconds or None, got {expiry_interval}")
        if busy_timeout <= 0:
            raise InvalidRequestError(f"busy_timeout must be > 0 seconds, got {busy_timeout}")
        if watch_poll_interval is not None and watch_poll_interval <= 0:
            raise InvalidRequestError(
                f"watch_poll_interval must be > 0 seconds or None, got {watch_poll_interval}"
            )
        try:
            self._core = SQLiteCore(os.fspath(path), clock, busy_timeout)
        except sqlite3.Error as exc:
            raise UnavailableError(
                f"cannot open the embedded Global DB at {os.fspath(path)!r}: {exc}"
            ) from exc
        self._path = os.fspath(path)
        self._expiry_interval = expiry_interval
        self._busy_timeout = busy_timeout
        self._poll = None if self._path == ":memory:" else watch_poll_interval
        self._changed: anyio.Event | None = None
        self._closed = False
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> SQLiteStore:
        if self._expiry_interval is not None:
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._expiry_loop)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(et, exc, tb)
            self._tg = None
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._core.close()
            self._notify()

    async def _expiry_loop(self) -> None:
        assert self._expiry_interval is not None
        while True:
            await anyio.sleep(self._expiry_interval)
            await self.expire_leases()

    # -- plumbing -------------------------------------------------------------------------------
    def _check_open(self) -> SQLiteCore:
        if self._closed:
            raise UnavailableError("the embedded Global DB is closed")
        return self._core

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _changed_event(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    async def _call(self, fn: Callable[[SQLiteCore], _T]) -> _T:
        """Run one core transaction, retrying while another process holds the file's lock.

        A busy attempt changed nothing (the core rolls it back), so retrying is safe. The wait
        between attempts is an async sleep: a locked file never blocks this event loop for more
        than SQLite's short per-attempt busy wait. Watches are woken if the call committed.
        """
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.001
        while True:
            core = self._check_open()
            commits = core.commits
            try:
                result = fn(core)
            except sqlite3.Error as exc:
                if not is_busy(exc):
                    raise UnavailableError(f"the embedded Global DB at {self._path!r} failed: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise UnavailableError(
                        f"the embedded Global DB at {self._path!r} stayed locked by another process "
                        f"for more than busy_timeout={self._busy_timeout} s"
                    ) from exc
                await anyio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            if core.commits != commits:
                self._notify()
            await anyio.lowlevel.checkpoint()
            return result

    async def _wait_for_change(self, changed: anyio.Event, seen: int) -> None:
        """Return once this process committed, or (polling) the store revision moved past ``seen``."""
        if self._poll is None:
            await changed.wait()
            return
        while True:
            with anyio.move_on_after(self._poll):
                await changed.wait()
                return
            if self._closed or await self._call(lambda core: core.revision) > seen:
                return

    async def expire_leases(self) -> int:
        """Revoke leases whose deadline (by the injected clock) has passed; returns how many."""
        return await self._call(lambda core: core.expire())

    # -- KV -------------------------------------------------------------------------------------
    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        result = await self.range(key, revision=revision)
        return result.kvs[0] if result.kvs else None

    async def range(
        self,
        key: Key,
        *,
        prefix: bool = False,
        range_end: Key | None = None,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> RangeResult:
        op = Get(key_range(key, prefix=prefix, range_end=range_end), limit, keys_only, count_only)
        await self.expire_leases()
        return await self._call(lambda core: core.range(op, revision))

    async def put(self, key: Key, value: Value, *, lease: int = 0, prev_kv: bool = False) -> PutResult:
        result = await self.txn((), [Put.of(key, value, lease=lease, prev_kv=prev_kv)])
        put = result.responses[0]
        assert isinstance(put, PutResult)
        return put

    async def delete(
        self, key: Key, *, prefix: bool = False, range_end: Key | None = None, prev_kv: bool = False
    ) -> DeleteResult:
        result = await self.txn((), [Delete(key_range(key, prefix=prefix, range_end=range_end), prev_kv)])
        deleted = result.responses[0]
        assert isinstance(deleted, DeleteResult)
        return deleted

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnResult:
        return await self._call(lambda core: core.txn(compare, success, failure))

    async def compact(self, revision: int) -> None:
        await self._call(lambda core: core.compact(revision))

    # -- watch ----------------------------------------------------------------------------------
    @asynccontextmanager
    async def watch(
        self, key: Key, *, prefix: bool = False, start_revision: int = 0, prev_kv: bool = False
    ) -> AsyncIterator[_SQLiteWatch]:
        r = key_range(key, prefix=prefix)
        if start_revision < 0:
            raise InvalidRequestError(f"start_revision must be >= 0 (0 = from now), got {start_revision}")
        start = start_revision or await self._call(lambda core: core.revision) + 1
        yield _SQLiteWatch(self, r, start, prev_kv)

    # -- leases ---------------------------------------------------------------------------------
    async def lease_grant(self, ttl: int, *, lease_id: int = 0) -> LeaseGrant:
        lid = await self._call(lambda core: core.lease_grant(ttl, lease_id))
        return LeaseGrant(lid, ttl)

    async def lease_revoke(self, lease_id: int) -> None:
        await self._call(lambda core: core.lease_revoke(lease_id))

    async def lease_keepalive(self, lease_id: int) -> int:
        await self.expire_leases()
        return await self._call(lambda core: core.lease_keepalive(lease_id))

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseInfo:
        await self.expire_leases()
        ttl, granted, names = await self._call(lambda core: core.lease_info(lease_id, keys))
        return LeaseInfo(lease_id, ttl, granted, names)

    # -- maintenance ----------------------------------------------------------------------------
    async def status(self) -> StoreStatus:
        db_size, revision = await self._call(lambda core: (core.db_size(), core.revision))
        return StoreStatus(
            version=f"sqlite-{sqlite3.sqlite_version}",
            db_size=db_size,
            revision=revision,
            leader=0,
            member_id=0,
            raft_term=0,
            raft_index=0,
        )

    async def snapshot(self, path: str | Path) -> int:
        core = self._check_open()
        target = Path(path)

        def backup() -> int:  # in a thread: the copy and the rename touch the disk
            tmp = target.with_name(target.name + ".part")
            core.backup(os.fspath(tmp))
            tmp.replace(target)
            return target.stat().st_size

        try:
            return await anyio.to_thread.run_sync(backup)
        except sqlite3.Error as exc:
            raise UnavailableError(
                f"snapshot of the embedded Global DB to {os.fspath(target)!r} failed: {exc}"
            ) from exc


class _SQLiteWatch:
    """Pull-based watch cursor over the history table (see module docstring).

    ``_next`` only moves past an event once it is handed out, and every read starts at ``_next``,
    so each event is delivered once and in revision order however the watch was woken.
    """

    def __init__(self, store: SQLiteStore, r: KeyRange, start: int, prev_kv: bool) -> None:
        self._store = store
        self._range = r
        self._next = start
        self._prev_kv = prev_kv
        self._buffer: list[Event] = []

    @property
    def next_revision(self) -> int:
        return self._next

    def _read(self, core: SQLiteCore) -> tuple[list[Event], int]:
        return core.events_since(self._range, self._next, self._prev_kv)

    def __aiter__(self) -> _SQLiteWatch:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            store = self._store
            changed = store._changed_event()
            events, seen = await store._call(self._read)
            if events:
                self._buffer = events
                break
            await store._wait_for_change(changed, seen)
        event = self._buffer.pop(0)
        self._next = self._buffer[0].revision if self._buffer else event.revision + 1
        return event
