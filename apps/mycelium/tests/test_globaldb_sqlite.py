"""What only the embedded store has: a file that survives restarts, its own expiry task, closing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from mycelium.globaldb import InvalidRequestError, SQLiteStore, UnavailableError

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_data_revisions_and_leases_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    clock = Clock()
    async with SQLiteStore(path, clock=clock, expiry_interval=None) as store:
        lease = await store.lease_grant(10)
        await store.put("/k", "v", lease=lease.id)
        rev = (await store.put("/plain", "p")).revision
    async with SQLiteStore(path, clock=clock, expiry_interval=None) as store:
        assert (await store.status()).revision == rev
        kv = await store.get("/k")
        assert kv is not None
        assert kv.lease == lease.id
        clock.now += 11  # the deadline was persisted, so the lease still expires on time
        await store.expire_leases()
        assert await store.get("/k") is None
        assert await store.get("/plain") is not None


async def test_background_task_expires_leases_without_being_asked(tmp_path: Path) -> None:
    clock = Clock()
    async with SQLiteStore(tmp_path / "db.sqlite", clock=clock, expiry_interval=0.02) as store:
        lease = await store.lease_grant(5)
        await store.put("/alive", "x", lease=lease.id)
        async with store.watch("/alive") as watch:
            clock.now += 6
            with anyio.fail_after(5):
                event = await watch.__anext__()
        assert event.kv.key == b"/alive"


async def test_closing_the_store_ends_waiting_watches_with_a_clear_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite", expiry_interval=None)
    outcome: list[BaseException] = []

    async def wait_for_event() -> None:
        async with store.watch("/x", prefix=True) as watch:
            try:
                await watch.__anext__()
            except UnavailableError as exc:
                outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_event)
            await anyio.sleep(0.05)
            await store.aclose()
    assert len(outcome) == 1
    assert "closed" in str(outcome[0])


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="expiry_interval"):
        SQLiteStore(tmp_path / "db.sqlite", expiry_interval=0)
    with pytest.raises(InvalidRequestError, match="busy_timeout"):
        SQLiteStore(tmp_path / "db.sqlite", busy_timeout=0)
    with pytest.raises(InvalidRequestError, match="watch_poll_interval"):
        SQLiteStore(tmp_path / "db.sqlite", watch_poll_interval=-1)
    with pytest.raises(UnavailableError, match="cannot open"):
        SQLiteStore(tmp_path / "missing-dir" / "db.sqlite")


async def test_a_locked_file_is_waited_for_without_blocking_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with SQLiteStore(path, expiry_interval=None) as store:
        other = sqlite3.connect(path, isolation_level=None)  # another writer, e.g. another process
        try:
            other.execute("BEGIN IMMEDIATE")
            results: list[int] = []

            async def write() -> None:
                results.append((await store.put("/k", "v")).revision)

            async def release_later() -> None:
                # Runs on the same loop: if the waiting put blocked the loop, this could not run
                # and the put would give up after busy_timeout instead of succeeding.
                await anyio.sleep(0.3)
                other.execute("COMMIT")

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(write)
                    tg.start_soon(release_later)
            assert results == [2]
        finally:
            other.close()


async def test_a_lock_held_past_busy_timeout_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with SQLiteStore(path, expiry_interval=None, busy_timeout=0.2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(UnavailableError, match="locked by another process"):
                await store.put("/k", "v")
            other.execute("ROLLBACK")
            assert (await store.put("/k", "v")).revision == 2  # nothing half-done was left behind
        finally:
            other.close()


async def test_watch_sees_commits_of_another_connection_by_polling(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with (
        SQLiteStore(path, expiry_interval=None, watch_poll_interval=0.01) as watcher,
        SQLiteStore(path, expiry_interval=None) as writer,
    ):
        async with watcher.watch("/p/", prefix=True) as watch:
            for i in range(3):
                await writer.put(f"/p/{i}", str(i))
            with anyio.fail_after(10):
                events = [await watch.__anext__() for _ in range(3)]
        assert [e.kv.key for e in events] == [b"/p/0", b"/p/1", b"/p/2"]
        assert [e.revision for e in events] == [2, 3, 4]
