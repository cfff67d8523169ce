"""The Primary Spore on the Global DB: spore's follower stays exact over both backends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import anyio
import pytest

from mycelium.globaldb import KVStore
from mycelium.primary import GlobalDBPrimaryAuthority
from spore import (
    Ed25519Signer,
    NetworkTrust,
    PrimaryView,
    Role,
    SporeError,
    SporeRecord,
    build_record,
    follow_primary,
)

pytestmark = pytest.mark.anyio


def record(network_id: str, signer: Ed25519Signer, incarnation: int = 1) -> SporeRecord:
    return build_record(
        signer,
        network_id=network_id,
        role=Role.RHIZOMORPH,
        addresses=("127.0.0.1:7000",),
        incarnation=incarnation,
        expires_at=time.time() + 3600,
    )


async def poll_until(cond: Callable[[], bool], within: float = 15.0) -> None:
    """The follower exposes state, not events: poll it, bounded."""
    with anyio.fail_after(within):
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def test_follower_sees_admissions_updates_and_removals_in_order(
    kv_backend: tuple[KVStore, object],
) -> None:
    store, _handle = kv_backend
    net = f"net{uuid.uuid4().hex[:8]}"
    authority = GlobalDBPrimaryAuthority(store, net)
    signers = [Ed25519Signer.generate() for _ in range(3)]
    first = record(net, signers[0])
    await authority.put(first)
    view = PrimaryView(NetworkTrust(net), time.time)
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow_primary, authority, view)
        await poll_until(lambda: first.node_id in view.members)
        assert view.reachable
        others = [record(net, s) for s in signers[1:]]
        for r in others:
            await authority.put(r)
        bumped = record(net, signers[1], incarnation=2)
        await authority.put(bumped)
        rev = await authority.remove(first.node_id)
        await poll_until(lambda: view.revision >= rev)
        tg.cancel_scope.cancel()
    assert set(view.members) == {r.node_id for r in others}
    assert view.members[bumped.node_id].incarnation == 2
    snap = await authority.snapshot()
    assert {m.node_id for m in snap.members} == set(view.members)


async def test_a_damaged_entry_is_not_a_member(kv_backend: tuple[KVStore, object]) -> None:
    store, _handle = kv_backend
    net = f"net{uuid.uuid4().hex[:8]}"
    authority = GlobalDBPrimaryAuthority(store, net)
    await authority.put(record(net, Ed25519Signer.generate()))
    await store.put(authority.prefix + "garbage", b"\xff\x00 not a record")
    snap = await authority.snapshot()
    assert len(snap.members) == 1


async def test_records_of_another_network_are_refused(kv_backend: tuple[KVStore, object]) -> None:
    store, _handle = kv_backend
    authority = GlobalDBPrimaryAuthority(store, "net-a")
    with pytest.raises(SporeError, match="network_id"):
        await authority.put(record("net-b", Ed25519Signer.generate()))
