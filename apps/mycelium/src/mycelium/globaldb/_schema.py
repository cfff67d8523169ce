"""Typed accessors over a :class:`KVStore` for one Mycelium network's Global DB keyspace.

Layout (one prefix per network so several networks can share an etcd cluster)::

    /mycelium/<network_id>/config                 NetworkConfig
    /mycelium/<network_id>/sclerotia/<node_id>    SclerotiumRecord  (the master list)
    /mycelium/<network_id>/trust/<node_id>        TrustScore
    /mycelium/<network_id>/health/<node_id>       HealthScore
    /mycelium/<network_id>/services/<name>        ServiceDefinition
    /mycelium/<network_id>/acls/<subject>         AclEntry
    /mycelium/<network_id>/seeds/master           SeedSporeEntry (kind master)
    /mycelium/<network_id>/seeds/service/<name>   SeedSporeEntry (kind service)
    /mycelium/<network_id>/alive/<node_id>        liveness entry bound to the node's session lease

Every write can carry ``expected_revision`` (the ``mod_revision`` the caller read, 0 for "must
not exist"); it is then a txn compare-and-swap and a concurrent change raises
:class:`ConflictError` instead of being overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

import attrs

from ._errors import ConflictError, NotFoundError
from ._model import Compare, Delete, Get, Put, RangeResult
from ._records import (
    AclEntry,
    HealthScore,
    NetworkConfig,
    R,
    SclerotiumRecord,
    SeedSporeEntry,
    ServiceDefinition,
    TrustScore,
    check_name,
    decode_record,
    encode_record,
)
from ._session import Session
from ._store import KVStore

__all__ = ["Versioned", "Collection", "Singleton", "NetworkDB"]


@attrs.frozen
class Versioned(Generic[R]):
    """A record and the ``mod_revision`` to pass back as ``expected_revision`` when updating it."""

    value: R
    revision: int


class _Slot(Generic[R]):
    def __init__(self, store: KVStore, cls: type[R]) -> None:
        self._store = store
        self._cls = cls

    async def _get(self, key: str) -> Versioned[R] | None:
        kv = await self._store.get(key)
        return None if kv is None else Versioned(decode_record(self._cls, kv.value), kv.mod_revision)

    async def _put(self, key: str, record: R, expected_revision: int | None, lease: int = 0) -> int:
        if not isinstance(record, self._cls):
            raise TypeError(f"expected a {self._cls.__name__}, got {type(record).__name__}")
        data = encode_record(record)
        if expected_revision is None:
            return (await self._store.put(key, data, lease=lease)).revision
        result = await self._store.txn(
            [Compare.mod_revision(key, "==", expected_revision)],
            [Put.of(key, data, lease=lease)],
            [Get.of(key)],
        )
        if not result.succeeded:
            got = result.responses[0]
            assert isinstance(got, RangeResult)
            raise ConflictError(key.encode(), expected_revision, got.kvs[0].mod_revision if got.kvs else 0)
        return result.revision

    async def _delete(self, key: str, expected_revision: int | None) -> bool:
        if expected_revision is None:
            return (await self._store.delete(key)).deleted > 0
        result = await self._store.txn(
            [Compare.mod_revision(key, "==", expected_revision)], [Delete.of(key)], [Get.of(key)]
        )
        if not result.succeeded:
            got = result.responses[0]
            assert isinstance(got, RangeResult)
            raise ConflictError(key.encode(), expected_revision, got.kvs[0].mod_revision if got.kvs else 0)
        return True

    async def _update(self, key: str, change: Callable[[R | None], R], attempts: int) -> Versioned[R]:
        """Read-modify-write with CAS, retried on conflict up to ``attempts`` times."""
        for attempt in range(attempts):
            current = await self._get(key)
            new = change(current.value if current else None)
            try:
                rev = await self._put(key, new, current.revision if current else 0)
                return Versioned(new, rev)
            except ConflictError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


class Collection(_Slot[R]):
    """Records of one type keyed by name under ``prefix``."""

    def __init__(self, store: KVStore, prefix: str, cls: type[R], key_of: Callable[[R], str]) -> None:
        super().__init__(store, cls)
        self.prefix = prefix
        self._key_of = key_of

    def key(self, name: str) -> str:
        return self.prefix + check_name(name, f"{self._cls.__name__} name")

    async def get(self, name: str) -> Versioned[R] | None:
        return await self._get(self.key(name))

    async def require(self, name: str) -> Versioned[R]:
        found = await self.get(name)
        if found is None:
            raise NotFoundError(f"no {self._cls.__name__} named {name!r} under {self.prefix}")
        return found

    async def list(self) -> list[Versioned[R]]:
        result = await self._store.range(self.prefix, prefix=True)
        return [Versioned(decode_record(self._cls, kv.value), kv.mod_revision) for kv in result.kvs]

    async def put(self, record: R, *, expected_revision: int | None = None) -> int:
        """Store ``record``; with ``expected_revision`` only if unchanged since then (0: absent)."""
        return await self._put(self.key(self._key_of(record)), record, expected_revision)

    async def create(self, record: R) -> int:
        return await self.put(record, expected_revision=0)

    async def update(self, name: str, change: Callable[[R | None], R], *, attempts: int = 5) -> Versioned[R]:
        return await self._update(self.key(name), change, attempts)

    async def delete(self, name: str, *, expected_revision: int | None = None) -> bool:
        return await self._delete(self.key(name), expected_revision)


class Singleton(_Slot[R]):
    """One record at a fixed key (the network configuration, the Master Seed Spore)."""

    def __init__(self, store: KVStore, key: str, cls: type[R]) -> None:
        super().__init__(store, cls)
        self.key = key

    async def get(self) -> Versioned[R] | None:
        return await self._get(self.key)

    async def require(self) -> Versioned[R]:
        found = await self.get()
        if found is None:
            raise NotFoundError(f"no {self._cls.__name__} stored at {self.key}")
        return found

    async def put(self, record: R, *, expected_revision: int | None = None) -> int:
        return await self._put(self.key, record, expected_revision)

    async def update(self, change: Callable[[R | None], R], *, attempts: int = 5) -> Versioned[R]:
        return await self._update(self.key, change, attempts)


class NetworkDB:
    """The Global DB of one network: ``NetworkDB(store, "net-1").sclerotia.get("node-a")``."""

    def __init__(self, store: KVStore, network_id: str) -> None:
        self.store = store
        self.network_id = check_name(network_id, "network_id")
        self.prefix = f"/mycelium/{network_id}/"
        p = self.prefix
        self.config: Singleton[NetworkConfig] = Singleton(store, p + "config", NetworkConfig)
        self.sclerotia: Collection[SclerotiumRecord] = Collection(
            store, p + "sclerotia/", SclerotiumRecord, lambda r: r.node_id
        )
        self.trust: Collection[TrustScore] = Collection(store, p + "trust/", TrustScore, lambda r: r.node_id)
        self.health: Collection[HealthScore] = Collection(
            store, p + "health/", HealthScore, lambda r: r.node_id
        )
        self.services: Collection[ServiceDefinition] = Collection(
            store, p + "services/", ServiceDefinition, lambda r: r.name
        )
        self.acls: Collection[AclEntry] = Collection(store, p + "acls/", AclEntry, lambda r: r.subject)
        self.master_seed: Singleton[SeedSporeEntry] = Singleton(store, p + "seeds/master", SeedSporeEntry)
        self.service_seeds: Collection[SeedSporeEntry] = Collection(
            store, p + "seeds/service/", SeedSporeEntry, lambda r: r.name
        )
        self._alive = p + "alive/"

    async def announce_alive(self, session: Session, node_id: str, info: bytes = b"") -> int:
        """Publish a liveness entry that disappears when ``session``'s lease ends."""
        key = self._alive + check_name(node_id, "node_id")
        return (await self.store.put(key, info, lease=session.lease_id)).revision

    async def alive(self) -> list[str]:
        """Node ids whose liveness entry exists (their session is still renewing its lease)."""
        result = await self.store.range(self._alive, prefix=True, keys_only=True)
        return [kv.key[len(self._alive) :].decode() for kv in result.kvs]
