"""The interface both backends implement: :class:`KVStore` (etcd client and embedded SQLite).

Everything above it (recipes, the typed schema, the app) is written against this protocol, so a
single-node network runs on SQLite and a real network on etcd without a line of difference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from ._model import (
    Compare,
    DeleteResult,
    Event,
    Key,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Op,
    PutResult,
    RangeResult,
    StoreStatus,
    TxnResult,
    Value,
)

__all__ = ["KVStore", "Watch"]


@runtime_checkable
class Watch(Protocol):
    """An open watch: iterate for events in revision order, each exactly once.

    ``next_revision`` is the first revision not yet delivered; a watch that is resumed (after a
    dropped connection) restarts exactly there.
    """

    @property
    def next_revision(self) -> int: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event: ...


@runtime_checkable
class KVStore(Protocol):
    """A strictly consistent, revisioned key-value store with txns, watches and leases."""

    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        """The key's current (or historical, at ``revision``) value, ``None`` when absent."""
        ...

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
        """Keys in ``[key, range_end)`` (or under ``key`` as prefix) in key order."""
        ...

    async def put(self, key: Key, value: Value, *, lease: int = 0, prev_kv: bool = False) -> PutResult: ...

    async def delete(
        self, key: Key, *, prefix: bool = False, range_end: Key | None = None, prev_kv: bool = False
    ) -> DeleteResult: ...

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Atomically: if every compare holds run ``success`` else ``failure``; one revision."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision`` (reads and watches below it raise CompactedError)."""
        ...

    def watch(
        self, key: Key, *, prefix: bool = False, start_revision: int = 0, prev_kv: bool = False
    ) -> AbstractAsyncContextManager[Watch]:
        """Changes to ``key`` (or under it), from ``start_revision`` (0 = after now)."""
        ...

    async def lease_grant(self, ttl: int, *, lease_id: int = 0) -> LeaseGrant: ...

    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke the lease and delete every key bound to it."""
        ...

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew the lease once; returns the new TTL in seconds."""
        ...

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseInfo: ...

    async def status(self) -> StoreStatus: ...

    async def snapshot(self, path: str | Path) -> int:
        """Write a consistent backup of the whole store to ``path``; returns bytes written."""
        ...

    async def aclose(self) -> None: ...
