"""Distributed lock and leader election on leases + txn, as etcd's ``concurrency`` package does.

Each contender puts ``<prefix>/<lease id>`` bound to its session's lease if absent; contenders are
ordered by the key's *create revision*, and each waits only for the deletion of its immediate
predecessor (no thundering herd). The holder's create revision is its **fencing token**: it grows
with every new holder, so a resource can refuse writes carrying an older token, and
:meth:`DistributedLock.guard` gives the txn compare that makes a write conditional on still
holding the lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

import anyio

from ._errors import InvalidRequestError, LockLostError
from ._model import Compare, Delete, EventType, Get, KeyValue, Put, RangeResult, to_bytes
from ._session import Session
from ._store import KVStore

__all__ = ["DistributedLock", "Election"]


async def _wait_for_turn(store: KVStore, prefix: bytes, my_rev: int, session: Session) -> None:
    """Block until no key under ``prefix`` has a create revision below ``my_rev``."""
    while True:
        session.check()
        result = await store.range(prefix, prefix=True, keys_only=True)
        ahead = [kv for kv in result.kvs if kv.create_revision < my_rev]
        if not ahead:
            return
        predecessor = max(ahead, key=lambda kv: kv.create_revision)
        async with store.watch(predecessor.key, start_revision=result.revision + 1) as watch:
            async for event in watch:
                if event.type is EventType.DELETE:
                    break


class _Contender:
    def __init__(self, session: Session, name: str | bytes) -> None:
        raw = to_bytes(name, "name")
        if not raw:
            raise InvalidRequestError("lock/election name must not be empty")
        self.session = session
        self.store = session.store
        self.prefix = raw.rstrip(b"/") + b"/"
        self._key = b""
        self._rev = 0

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def fencing_token(self) -> int:
        """The create revision of our key: larger than every earlier holder's token."""
        if not self._rev:
            raise LockLostError("not held: acquire the lock (or win the campaign) first")
        return self._rev

    def guard(self) -> Compare:
        """A txn compare that holds only while we still own the key we were granted."""
        return Compare.create_revision(self._key, "==", self.fencing_token)

    async def _enter_queue(self, value: bytes) -> None:
        key = self.prefix + f"{self.session.lease_id:x}".encode()
        result = await self.store.txn(
            [Compare.create_revision(key, "==", 0)],
            [Put(key, value, self.session.lease_id)],
            [Get.of(key)],
        )
        if result.succeeded:
            rev = result.revision
        else:  # our session already queued here (re-entrant use of one session)
            got = result.responses[0]
            assert isinstance(got, RangeResult)
            rev = got.kvs[0].create_revision
        self._key, self._rev = key, rev
        try:
            await _wait_for_turn(self.store, self.prefix, rev, self.session)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._leave()
            raise

    async def _leave(self) -> None:
        if self._key:
            key, self._key, self._rev = self._key, b"", 0
            await self.store.txn([Compare.version(key, ">", 0)], [Delete.of(key)])


class DistributedLock(_Contender):
    """``async with DistributedLock(session, "/mycelium/net/locks/config") as lock:``."""

    async def acquire(self) -> int:
        """Wait for the lock; returns the fencing token."""
        await self._enter_queue(b"")
        return self._rev

    async def release(self) -> None:
        with anyio.CancelScope(shield=True):  # a cancelled holder must still let the next one in
            await self._leave()

    async def __aenter__(self) -> DistributedLock:
        await self.acquire()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class Election(_Contender):
    """Leader election: ``campaign`` blocks until leader; ``leader()`` and ``observe()`` for others."""

    async def campaign(self, value: str | bytes) -> int:
        """Become leader (waits for earlier candidates); returns the fencing token."""
        await self._enter_queue(to_bytes(value, "value"))
        return self._rev

    async def proclaim(self, value: str | bytes) -> None:
        """Publish a new value as the current leader; raises :class:`LockLostError` if no longer leader."""
        rev = self.fencing_token
        result = await self.store.txn(
            [self.guard()], [Put(self._key, to_bytes(value, "value"), self.session.lease_id)]
        )
        if not result.succeeded:
            self._key, self._rev = b"", 0
            raise LockLostError(
                f"leadership with fencing token {rev} was lost (lease expired or key deleted)"
            )

    async def resign(self) -> None:
        await self._leave()

    async def leader(self) -> KeyValue | None:
        """The current leader's key and value (the oldest candidate), or ``None``."""
        result = await self.store.range(self.prefix, prefix=True)
        return min(result.kvs, key=lambda kv: kv.create_revision, default=None)

    @asynccontextmanager
    async def observe(self) -> AsyncIterator[AsyncIterator[KeyValue]]:
        """Yield an iterator of leaders: the current one first, then each change of leader or value."""
        first = await self.store.range(self.prefix, prefix=True)
        async with self.store.watch(self.prefix, prefix=True, start_revision=first.revision + 1) as watch:

            async def leaders() -> AsyncIterator[KeyValue]:
                last: tuple[bytes, int] | None = None
                current = min(first.kvs, key=lambda kv: kv.create_revision, default=None)
                while True:
                    if current is not None and (current.key, current.mod_revision) != last:
                        last = (current.key, current.mod_revision)
                        yield current
                    await watch.__anext__()
                    current = await self.leader()

            yield leaders()
