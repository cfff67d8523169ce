"""The KVStore contract: every test runs against SQLite, a 1-member etcd and a 3-member etcd.

Whatever the embedded store does differently from etcd is a bug in the embedded store: these
tests state etcd's v3 semantics (revisions, txn compares, watches, leases) as the specification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mycelium.globaldb import (
    CompactedError,
    Compare,
    Delete,
    EventType,
    FutureRevisionError,
    Get,
    InvalidRequestError,
    KVStore,
    LeaseNotFoundError,
    Put,
    PutResult,
    RangeResult,
)

pytestmark = pytest.mark.anyio

Backend = tuple[KVStore, Any]


async def test_put_then_get_returns_value_and_mvcc_metadata(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    k = key_prefix + "a"
    first = await store.put(k, "v1")
    second = await store.put(k, b"v2")
    kv = await store.get(k)
    assert kv is not None
    assert kv.value == b"v2"
    assert second.revision > first.revision
    assert (kv.create_revision, kv.mod_revision, kv.version) == (first.revision, second.revision, 2)
    assert await store.get(key_prefix + "missing") is None


async def test_put_prev_kv_returns_the_replaced_value(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    k = key_prefix + "p"
    assert (await store.put(k, "one", prev_kv=True)).prev_kv is None
    replaced = (await store.put(k, "two", prev_kv=True)).prev_kv
    assert replaced is not None
    assert replaced.value == b"one"


async def test_range_prefix_is_key_ordered_and_excludes_neighbours(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    for name in ["c", "a", "b"]:
        await store.put(f"{key_prefix}dir/{name}", name)
    await store.put(f"{key_prefix}dir0", "neighbour")  # shares the string prefix "dir" but not "dir/"
    result = await store.range(key_prefix + "dir/", prefix=True)
    assert [kv.key for kv in result.kvs] == [f"{key_prefix}dir/{n}".encode() for n in "abc"]
    assert result.count == 3
    assert not result.more


async def test_range_limit_sets_more_and_counts_all(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    for i in range(5):
        await store.put(f"{key_prefix}{i}", str(i))
    page = await store.range(key_prefix, prefix=True, limit=2)
    assert [kv.value for kv in page.kvs] == [b"0", b"1"]
    assert page.more
    assert page.count == 5
    counted = await store.range(key_prefix, prefix=True, count_only=True)
    assert counted.kvs == ()
    assert counted.count == 5
    keys = await store.range(key_prefix, prefix=True, keys_only=True)
    assert all(kv.value == b"" for kv in keys.kvs)
    assert len(keys.kvs) == 5


async def test_range_with_range_end_is_half_open(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    for name in "abcd":
        await store.put(key_prefix + name, name)
    result = await store.range(key_prefix + "b", range_end=key_prefix + "d")
    assert [kv.value for kv in result.kvs] == [b"b", b"c"]


async def test_range_at_a_past_revision_sees_the_old_state(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    k = key_prefix + "h"
    r1 = await store.put(k, "old")
    await store.put(k, "new")
    await store.delete(k)
    old = await store.get(k, revision=r1.revision)
    assert old is not None
    assert old.value == b"old"
    assert await store.get(k) is None


async def test_range_at_a_future_revision_is_refused(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    rev = (await store.put(key_prefix + "f", "x")).revision
    with pytest.raises(FutureRevisionError, match="future"):
        await store.range(key_prefix + "f", revision=rev + 1000)


async def test_delete_prefix_reports_count_and_prev_kvs(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    for i in range(3):
        await store.put(f"{key_prefix}d/{i}", str(i))
    result = await store.delete(key_prefix + "d/", prefix=True, prev_kv=True)
    assert result.deleted == 3
    assert sorted(kv.value for kv in result.prev_kvs) == [b"0", b"1", b"2"]
    assert (await store.range(key_prefix + "d/", prefix=True)).count == 0


async def test_recreated_key_restarts_version_and_create_revision(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    k = key_prefix + "r"
    await store.put(k, "a")
    await store.put(k, "b")
    await store.delete(k)
    again = await store.put(k, "c")
    kv = await store.get(k)
    assert kv is not None
    assert kv.version == 1
    assert kv.create_revision == again.revision


async def test_txn_value_compare_picks_the_branch(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    k = key_prefix + "t"
    await store.put(k, "blue")
    hit = await store.txn([Compare.value(k, "==", "blue")], [Put.of(k, "green")], [Put.of(k, "red")])
    miss = await store.txn([Compare.value(k, "==", "blue")], [Put.of(k, "x")], [Get.of(k)])
    assert hit.succeeded
    assert not miss.succeeded
    got = miss.responses[0]
    assert isinstance(got, RangeResult)
    assert got.kvs[0].value == b"green"


async def test_txn_value_compare_on_a_missing_key_is_false_even_for_not_equal(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    result = await store.txn([Compare.value(key_prefix + "nope", "!=", "x")], [Put.of(key_prefix + "s", "1")])
    assert not result.succeeded
    assert await store.get(key_prefix + "s") is None


async def test_txn_version_zero_creates_only_if_absent(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    k = key_prefix + "once"
    first = await store.txn([Compare.version(k, "==", 0)], [Put.of(k, "first")])
    second = await store.txn([Compare.version(k, "==", 0)], [Put.of(k, "second")])
    assert first.succeeded
    assert not second.succeeded
    kv = await store.get(k)
    assert kv is not None
    assert kv.value == b"first"


async def test_txn_mod_revision_cas_lets_exactly_one_concurrent_writer_win(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    k = key_prefix + "cas"
    rev = (await store.put(k, "0")).revision
    wins: list[int] = []

    async def writer(i: int) -> None:
        result = await store.txn([Compare.mod_revision(k, "==", rev)], [Put.of(k, str(i))])
        if result.succeeded:
            wins.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(writer, i)
    assert len(wins) == 1
    kv = await store.get(k)
    assert kv is not None
    assert kv.value == str(wins[0]).encode()


async def test_txn_greater_and_less_compare_on_create_revision(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    k = key_prefix + "c"
    rev = (await store.put(k, "x")).revision
    assert (await store.txn([Compare.create_revision(k, "<", rev + 1)])).succeeded
    assert not (await store.txn([Compare.create_revision(k, ">", rev)])).succeeded


async def test_txn_writes_share_one_revision_and_later_ops_see_earlier_ones(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    result = await store.txn(
        [], [Put.of(key_prefix + "1", "a"), Put.of(key_prefix + "2", "b"), Get.of(key_prefix, prefix=True)]
    )
    a, b = await store.get(key_prefix + "1"), await store.get(key_prefix + "2")
    assert a is not None
    assert b is not None
    assert a.mod_revision == b.mod_revision == result.revision
    seen = result.responses[2]
    assert isinstance(seen, RangeResult)
    assert seen.count == 2


async def test_txn_that_only_reads_does_not_advance_the_revision(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    rev = (await store.put(key_prefix + "ro", "x")).revision
    result = await store.txn([], [Get.of(key_prefix + "ro")])
    assert result.revision == rev


async def test_txn_writing_the_same_key_twice_is_refused(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    with pytest.raises(InvalidRequestError, match="twice"):
        await store.txn([], [Put.of(key_prefix + "k", "1"), Put.of(key_prefix + "k", "2")])


async def test_bad_arguments_raise_invalid_request_naming_the_field(kv_backend: Backend) -> None:
    store, _ = kv_backend
    with pytest.raises(InvalidRequestError, match="key must not be empty"):
        await store.put("", "x")
    with pytest.raises(InvalidRequestError, match="limit"):
        await store.range("/x", limit=-1)
    with pytest.raises(InvalidRequestError, match="operator"):
        Compare.value("/x", "~", "y")


async def test_prefix_watch_delivers_puts_and_deletes_in_order(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    async with store.watch(key_prefix + "w/", prefix=True) as watch:
        await store.put(key_prefix + "w/a", "1")
        await store.put(key_prefix + "other", "ignored")
        await store.put(key_prefix + "w/b", "2")
        await store.delete(key_prefix + "w/a")
        events = []
        with anyio.fail_after(10):
            async for event in watch:
                events.append(event)
                if len(events) == 3:
                    break
    assert [(e.type, e.kv.key) for e in events] == [
        (EventType.PUT, f"{key_prefix}w/a".encode()),
        (EventType.PUT, f"{key_prefix}w/b".encode()),
        (EventType.DELETE, f"{key_prefix}w/a".encode()),
    ]
    assert events[0].revision < events[1].revision < events[2].revision


async def test_watch_from_a_past_revision_replays_history_and_tracks_next_revision(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    first = await store.put(key_prefix + "x", "1")
    last = await store.put(key_prefix + "x", "2")
    async with store.watch(key_prefix + "x", start_revision=first.revision, prev_kv=True) as watch:
        with anyio.fail_after(10):
            e1 = await watch.__anext__()
            e2 = await watch.__anext__()
        assert watch.next_revision == last.revision + 1
    assert (e1.kv.value, e2.kv.value) == (b"1", b"2")
    assert e2.prev_kv is not None
    assert e2.prev_kv.value == b"1"


async def test_compacted_history_gives_a_clear_error_for_reads_and_watches(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, _ = kv_backend
    old = await store.put(key_prefix + "c", "1")
    await store.put(key_prefix + "c", "2")
    now = await store.put(key_prefix + "c", "3")
    await store.compact(now.revision)
    with pytest.raises(CompactedError, match="compacted"):
        await store.get(key_prefix + "c", revision=old.revision)

    async def watch_from_old_revision() -> None:
        async with store.watch(key_prefix + "c", start_revision=old.revision) as watch:
            with anyio.fail_after(10):
                await watch.__anext__()

    with pytest.raises(CompactedError) as info:  # at open (etcd) or first read (SQLite)
        await watch_from_old_revision()
    assert info.value.compact_revision == now.revision
    current = await store.get(key_prefix + "c", revision=now.revision)
    assert current is not None
    assert current.value == b"3"


async def test_lease_binds_keys_and_revoke_deletes_them(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    lease = await store.lease_grant(30)
    await store.put(key_prefix + "live/1", "a", lease=lease.id)
    await store.put(key_prefix + "live/2", "b", lease=lease.id)
    info = await store.lease_time_to_live(lease.id, keys=True)
    assert info.granted_ttl == 30
    assert 0 < info.ttl <= 30
    assert sorted(info.keys) == [f"{key_prefix}live/{i}".encode() for i in (1, 2)]
    kv = await store.get(key_prefix + "live/1")
    assert kv is not None
    assert kv.lease == lease.id
    await store.lease_revoke(lease.id)
    assert (await store.range(key_prefix + "live/", prefix=True)).count == 0
    with pytest.raises(LeaseNotFoundError):
        await store.lease_time_to_live(lease.id)


async def test_expired_lease_deletes_its_keys_and_watchers_see_it(
    kv_backend: Backend, key_prefix: str
) -> None:
    store, handle = kv_backend
    lease = await store.lease_grant(1)
    await store.put(key_prefix + "e", "alive", lease=lease.id)
    async with store.watch(key_prefix + "e") as watch:
        await handle.advance(2.5)
        with anyio.fail_after(10):
            event = await watch.__anext__()
    assert event.type is EventType.DELETE
    assert await store.get(key_prefix + "e") is None
    with pytest.raises(LeaseNotFoundError):
        await store.lease_keepalive(lease.id)


async def test_keepalive_renews_the_lease(kv_backend: Backend, key_prefix: str) -> None:
    store, handle = kv_backend
    lease = await store.lease_grant(3)
    await store.put(key_prefix + "k", "v", lease=lease.id)
    await handle.advance(1.5)
    assert await store.lease_keepalive(lease.id) == 3
    await handle.advance(2.0)  # 3.5 s after the grant: alive only because of the renewal
    assert await store.get(key_prefix + "k") is not None


async def test_put_with_an_unknown_lease_is_refused(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    with pytest.raises(LeaseNotFoundError, match="not found"):
        await store.put(key_prefix + "x", "v", lease=0x7EADBEEF)
    assert await store.get(key_prefix + "x") is None


async def test_status_reports_the_current_revision(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    put: PutResult = await store.put(key_prefix + "s", "x")
    status = await store.status()
    assert status.revision >= put.revision
    assert status.db_size > 0
    assert status.version


async def test_snapshot_writes_a_backup_file(kv_backend: Backend, key_prefix: str, tmp_path: Path) -> None:
    store, _ = kv_backend
    await store.put(key_prefix + "snap", "x" * 1000)
    target = tmp_path / "backup.db"
    size = await store.snapshot(target)
    assert size > 1000
    assert target.stat().st_size == size
    assert not (tmp_path / "backup.db.part").exists()


async def test_delete_of_a_range_inside_txn(kv_backend: Backend, key_prefix: str) -> None:
    store, _ = kv_backend
    await store.put(key_prefix + "z/1", "1")
    result = await store.txn(
        [Compare.version(key_prefix + "z/1", ">", 0)], [Delete.of(key_prefix + "z/", prefix=True)]
    )
    assert result.succeeded
    assert (await store.range(key_prefix + "z/", prefix=True)).count == 0
