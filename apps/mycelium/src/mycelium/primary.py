"""The Primary Spore's authority on the Global DB (etcd's Raft, or the embedded store).

spore defines `PrimaryAuthority` and ships a single-process implementation; this is the one the
network runs: membership records live under ``/mycelium/<network>/primary/<node id>``, every
admission or removal is one revision of the store, and followers watch from the revision their
snapshot was taken at, so a Sclerotium that was away resumes without missing or repeating a change.
Values are spore's own signed record encoding; they are decoded (bounded) and re-validated by the
follower, so a tampered store entry is dropped, not trusted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mycelium.globaldb import EventType, GlobalDBError, KVStore
from spore import MembershipChange, PrimarySnapshot, SporeError, SporeRecord, decode_record, encode_record


class GlobalDBPrimaryAuthority:
    """`spore.PrimaryAuthority` on a `KVStore`: strictly consistent, one revision per change."""

    def __init__(self, store: KVStore, network_id: str) -> None:
        self.store = store
        self.network_id = network_id
        self.prefix = f"/mycelium/{network_id}/primary/"

    def _key(self, node_id: str) -> str:
        if not node_id or "/" in node_id:
            raise SporeError(f"node_id {node_id!r} cannot be a Primary Spore key")
        return self.prefix + node_id

    async def snapshot(self) -> PrimarySnapshot:
        try:
            result = await self.store.range(self.prefix, prefix=True)
        except GlobalDBError as exc:
            raise SporeError(f"Primary Spore unreachable: {exc}") from exc
        members = []
        for kv in result.kvs:
            try:
                members.append(decode_record(kv.value))
            except SporeError:
                continue  # a damaged entry is not a member; the follower counts rejects itself
        return PrimarySnapshot(self.network_id, result.revision, tuple(members))

    async def put(self, record: SporeRecord) -> int:
        if record.network_id != self.network_id:
            raise SporeError(f"record network_id {record.network_id!r} is not {self.network_id!r}")
        try:
            return (await self.store.put(self._key(record.node_id), encode_record(record))).revision
        except GlobalDBError as exc:
            raise SporeError(f"Primary Spore unreachable: {exc}") from exc

    async def remove(self, node_id: str) -> int:
        try:
            result = await self.store.delete(self._key(node_id))
        except GlobalDBError as exc:
            raise SporeError(f"Primary Spore unreachable: {exc}") from exc
        return result.revision

    async def watch(self, after_revision: int) -> AsyncIterator[MembershipChange]:
        try:
            async with self.store.watch(
                self.prefix, prefix=True, start_revision=after_revision + 1
            ) as events:
                async for event in events:
                    node_id = event.kv.key[len(self.prefix.encode()) :].decode()
                    if event.type is EventType.DELETE:
                        yield MembershipChange(event.revision, node_id, None)
                        continue
                    try:
                        record = decode_record(event.kv.value)
                    except SporeError:
                        continue
                    yield MembershipChange(event.revision, node_id, record)
        except GlobalDBError as exc:
            raise SporeError(f"Primary Spore watch lost: {exc}") from exc
