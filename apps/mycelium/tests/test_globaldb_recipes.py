"""Sessions, locks and elections on every backend (SQLite, 1-member and 3-member etcd)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mycelium.globaldb import DistributedLock, Election, KVStore, LockLostError, Put, Session

pytestmark = pytest.mark.anyio

Backend = tuple[KVStore, Any]


async def test_lock_gives_mutual_exclusion_for_read_modify_write(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    counter = key_prefix + "counter"
    await store.put(counter, "0")
    holders = 0
    max_holders = 0

    async def worker() -> None:
        nonlocal holders, max_holders
        async with Session(store, ttl=10) as session:
            for _ in range(3):
                async with DistributedLock(session, key_prefix + "lock"):
                    holders += 1
                    max_holders = max(max_holders, holders)
                    kv = await store.get(counter)
                    assert kv is not None
                    await anyio.sleep(0.001)
                    await store.put(counter, str(int(kv.value) + 1))
                    holders -= 1

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(worker)
    final = await store.get(counter)
    assert final is not None
    assert final.value == b"12"
    assert max_holders == 1


async def test_fencing_tokens_grow_with_each_new_holder(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    tokens = []
    async with Session(store, ttl=10) as a, Session(store, ttl=10) as b:
        for session in (a, b, a):
            async with DistributedLock(session, key_prefix + "fenced") as lock:
                tokens.append(lock.fencing_token)
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 3


async def test_guarded_write_fails_once_the_lock_is_lost(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    async with Session(store, ttl=10) as session:
        lock = DistributedLock(session, key_prefix + "g")
        await lock.acquire()
        ok = await store.txn([lock.guard()], [Put.of(key_prefix + "data", "v1")])
        await store.lease_revoke(session.lease_id)  # e.g. the lease expired during a long pause
        stale = await store.txn([lock.guard()], [Put.of(key_prefix + "data", "v2")])
    assert ok.succeeded
    assert not stale.succeeded
    kv = await store.get(key_prefix + "data")
    assert kv is not None
    assert kv.value == b"v1"


async def test_lock_of_a_crashed_holder_passes_on_when_its_lease_expires(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, handle = kv_backend
    async with Session(store, ttl=1, keepalive=False) as crashed, Session(store, ttl=30) as waiting:
        first = await DistributedLock(crashed, key_prefix + "c").acquire()
        second = DistributedLock(waiting, key_prefix + "c")
        acquired = anyio.Event()

        async def contend() -> None:
            await second.acquire()
            acquired.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(contend)
            await anyio.sleep(0.2)
            assert not acquired.is_set()
            await handle.advance(2.5)  # the crashed holder never renews
            with anyio.fail_after(20):
                await acquired.wait()
        assert second.fencing_token > first
        await second.release()


async def test_election_hands_over_to_the_next_candidate_on_resign(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    name = key_prefix + "leader"
    async with Session(store, ttl=10) as s1, Session(store, ttl=10) as s2:
        e1, e2 = Election(s1, name), Election(s2, name)
        seen: list[bytes] = []
        async with e1.observe() as leaders:
            t1 = await e1.campaign("node-1")
            current = await e2.leader()
            assert current is not None
            assert current.value == b"node-1"
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:

                    async def second() -> None:
                        t2 = await e2.campaign("node-2")
                        assert t2 > t1

                    tg.start_soon(second)
                    async for kv in leaders:
                        seen.append(kv.value)
                        if kv.value == b"node-1" and len(seen) == 1:
                            await e1.proclaim("node-1b")
                        elif kv.value == b"node-1b":
                            await e1.resign()
                        elif kv.value == b"node-2":
                            break
        await e2.resign()
    assert seen == [b"node-1", b"node-1b", b"node-2"]


async def test_proclaim_after_losing_leadership_raises(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    async with Session(store, ttl=10) as session:
        election = Election(session, key_prefix + "e")
        await election.campaign("me")
        await store.lease_revoke(session.lease_id)
        with pytest.raises(LockLostError, match="lost"):
            await election.proclaim("still me?")
