"""Several real processes on one embedded Global DB file, as ``mycelium up`` runs its Sclerotia.

Each helper process is ``python -c CHILD <mode> <path> <arg>``: it opens its own ``SQLiteStore``
on the shared file, optionally waits for a "go" line on stdin (so racers really start together),
and prints one JSON line with what it saw. Assertions are about outcomes (who won, which
revisions, which events), never about how long something took; every wait has a generous bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from mycelium.globaldb import (
    CompactedError,
    EventType,
    LeaseNotFoundError,
    Put,
    SQLiteStore,
)

pytestmark = [pytest.mark.integration]

CHILD = r"""
import json, sys, time
import anyio
from mycelium.globaldb import Compare, Put, SQLiteStore

mode, path, arg = sys.argv[1], sys.argv[2], sys.argv[3]

def sync_start():
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"

async def main():
    async with SQLiteStore(path, expiry_interval=None) as store:
        if mode == "cas":  # arg: "<name>:<rounds>"; move /cas from r to r+1, record wins
            name, rounds = arg.split(":")
            sync_start()
            won = []
            for _ in range(20 * int(rounds)):
                r = int((await store.get("/cas")).value)
                if r >= int(rounds):
                    break
                result = await store.txn(
                    [Compare.value("/cas", "==", str(r))],
                    [Put.of("/cas", str(r + 1)), Put.of(f"/won/{r:05d}", name)],
                )
                if result.succeeded:
                    won.append(r)
            print(json.dumps(won))
        elif mode == "puts":  # arg: "<name>:<n>"; own keys and one shared key, record revisions
            name, n = arg.split(":")
            sync_start()
            revs = []
            for i in range(int(n)):
                key = "/shared" if i % 3 == 0 else f"/own/{name}/{i}"
                revs.append((await store.put(key, f"{name}-{i}")).revision)
            print(json.dumps(revs))
        elif mode == "writer":  # arg: n; puts, two-key txns and deletes under /w/, then /w/~done
            revs = []
            for i in range(int(arg)):
                if i % 5 == 4:
                    result = await store.txn((), [Put.of(f"/w/a{i}", "x"), Put.of(f"/w/b{i}", "y")])
                    revs.append(result.revision)
                elif i % 7 == 6:  # deletes what step i - 1 wrote
                    victim = f"/w/a{i - 1}" if (i - 1) % 5 == 4 else f"/w/{i - 1}"
                    revs.append((await store.delete(victim)).revision)
                else:
                    revs.append((await store.put(f"/w/{i}", str(i))).revision)
            revs.append((await store.put("/w/~done", "1")).revision)
            print(json.dumps(revs))
        elif mode == "leases":  # arg: count; leases of 2 s, three keys each, granted here
            out = [(await store.lease_grant(2)).id for _ in range(int(arg))]
            await store.txn((), [Put.of(f"/leased/{n}/{k}", "v", lease=lid) for n, lid in enumerate(out) for k in range(3)])
            print(json.dumps({"leases": out, "revision": (await store.status()).revision}))
        elif mode == "expirer":  # revoke expired leases until none of their keys is left
            # Reads expire leases too, so they go through a store whose clock stands still: then
            # every revocation of this process is one counted by expire_leases() here.
            async with SQLiteStore(path, expiry_interval=None, clock=lambda: 0.0) as reader:
                sync_start()
                revoked = 0
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    revoked += await store.expire_leases()
                    if (await reader.range("/leased/", prefix=True, count_only=True)).count == 0:
                        break
                    await anyio.sleep(0.01)
                print(json.dumps(revoked))
        elif mode == "keepalive":  # arg: lease id
            print(json.dumps(await store.lease_keepalive(int(arg))))
        elif mode == "counter":  # arg: n; puts /c/<i> = i, one revision each
            sync_start()
            for i in range(int(arg)):
                await store.put(f"/c/{i:05d}", str(i))
            print(json.dumps((await store.status()).revision))

anyio.run(main)
"""


class Children:
    """The helper processes of one test; whatever is still running at teardown is killed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, mode: str, arg: str = "") -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(self.path), arg],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def go(*procs: subprocess.Popen[str]) -> None:
        """Wait until every process has opened the store, then release them all at once."""
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.communicate(timeout=60)[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    @staticmethod
    def result(proc: subprocess.Popen[str]) -> Any:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return json.loads(out.splitlines()[-1])

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    kids = Children(tmp_path / "shared.sqlite")
    try:
        yield kids
    finally:
        kids.close()


def store_for(children: Children, **kwargs: Any) -> SQLiteStore:
    return SQLiteStore(children.path, expiry_interval=None, **kwargs)


@pytest.mark.anyio
async def test_compare_and_swap_race_has_exactly_one_winner_per_round(children: Children) -> None:
    rounds = 150
    async with store_for(children) as store:
        await store.put("/cas", "0")
    racers = [children.spawn("cas", f"{name}:{rounds}") for name in ("a", "b")]
    await anyio.to_thread.run_sync(children.go, *racers)
    won_a, won_b = [await anyio.to_thread.run_sync(children.result, p) for p in racers]
    assert not set(won_a) & set(won_b), "two processes won the same round"
    assert sorted(won_a + won_b) == list(range(rounds))
    async with store_for(children) as store:
        winners = await store.range("/won/", prefix=True)
        assert [kv.key for kv in winners.kvs] == [f"/won/{r:05d}".encode() for r in range(rounds)]
        for kv in winners.kvs:  # the recorded winner is the process that saw its txn succeed
            r = int(kv.key.decode().rsplit("/", 1)[1])
            assert kv.value == (b"a" if r in won_a else b"b")
            assert kv.version == 1
        cas = await store.get("/cas")
        assert cas is not None
        assert cas.value == str(rounds).encode()
        assert cas.version == rounds + 1


@pytest.mark.anyio
async def test_revisions_are_unique_and_increasing_across_concurrent_writers(children: Children) -> None:
    per_process = 120
    async with store_for(children) as store:
        base = (await store.status()).revision
    writers = [children.spawn("puts", f"p{n}:{per_process}") for n in range(3)]
    await anyio.to_thread.run_sync(children.go, *writers)
    results = [await anyio.to_thread.run_sync(children.result, p) for p in writers]
    for revs in results:
        assert revs == sorted(revs)
        assert len(set(revs)) == len(revs)
    every = sorted(rev for revs in results for rev in revs)
    assert every == list(range(base + 1, base + 1 + 3 * per_process)), "a revision was reused or skipped"
    async with store_for(children) as store:
        assert (await store.status()).revision == base + 3 * per_process
        shared = await store.get("/shared")
        assert shared is not None
        assert shared.version == 3 * len(range(0, per_process, 3))


@pytest.mark.anyio
async def test_watch_sees_every_commit_of_another_process_once_and_in_order(children: Children) -> None:
    n = 60
    async with store_for(children) as store:
        async with store.watch("/w/", prefix=True) as watch:
            writer = children.spawn("writer", str(n))
            events = []
            with anyio.fail_after(60):
                async for event in watch:  # nothing in this process writes: only polling wakes it
                    events.append(event)
                    if event.kv.key == b"/w/~done":
                        break
        revs = await anyio.to_thread.run_sync(children.result, writer)
    expected: list[tuple[EventType, bytes]] = []
    for i in range(n):
        if i % 5 == 4:
            expected += [(EventType.PUT, f"/w/a{i}".encode()), (EventType.PUT, f"/w/b{i}".encode())]
        elif i % 7 == 6:
            victim = f"/w/a{i - 1}" if (i - 1) % 5 == 4 else f"/w/{i - 1}"
            expected.append((EventType.DELETE, victim.encode()))
        else:
            expected.append((EventType.PUT, f"/w/{i}".encode()))
    expected.append((EventType.PUT, b"/w/~done"))
    assert [(e.type, e.kv.key) for e in events] == expected
    assert [e.revision for e in events] == sorted(e.revision for e in events)
    assert sorted(set(e.revision for e in events)) == revs  # one revision per writer call


@pytest.mark.anyio
async def test_leases_from_one_process_expire_once_for_the_others(children: Children) -> None:
    count = 4
    # This process never expires anything itself (its clock stands still at 0), so every
    # revocation below is done by the two expirer processes racing each other.
    async with store_for(children, clock=lambda: 0.0) as store:
        granted = await anyio.to_thread.run_sync(children.result, children.spawn("leases", str(count)))
        after_grant = granted["revision"]
        present = await store.range("/leased/", prefix=True)
        assert {kv.lease for kv in present.kvs} == set(granted["leases"])
        assert present.count == 3 * count

        expirers = [children.spawn("expirer") for _ in range(2)]
        await anyio.to_thread.run_sync(children.go, *expirers)
        revoked = [await anyio.to_thread.run_sync(children.result, p) for p in expirers]
        assert sum(revoked) == count, f"leases revoked {revoked} times in total, expected {count}"

        assert (await store.range("/leased/", prefix=True, count_only=True)).count == 0
        assert (await store.status()).revision == after_grant + count  # one revision per lease
        for lease_id in granted["leases"]:
            with pytest.raises(LeaseNotFoundError):
                await store.lease_time_to_live(lease_id)
        async with store.watch("/leased/", prefix=True, start_revision=after_grant + 1) as watch:
            deletes = []
            with anyio.fail_after(30):
                async for event in watch:
                    deletes.append(event)
                    if len(deletes) == 3 * count:
                        break
        assert all(e.type is EventType.DELETE for e in deletes)
        assert len({e.kv.key for e in deletes}) == 3 * count
        assert len({e.revision for e in deletes}) == count


@pytest.mark.anyio
async def test_keepalive_in_another_process_extends_the_shared_deadline(children: Children) -> None:
    # Granted with a clock 25 s behind: a 30 s lease that has about 5 s left in real time.
    async with store_for(children, clock=lambda: time.time() - 25) as behind:
        lease = await behind.lease_grant(30)
        await behind.put("/kept", "v", lease=lease.id)
    async with store_for(children) as store:
        assert (await store.lease_time_to_live(lease.id)).ttl <= 5
        ttl = await anyio.to_thread.run_sync(children.result, children.spawn("keepalive", str(lease.id)))
        assert ttl == 30
        assert (await store.lease_time_to_live(lease.id)).ttl > 20
        assert await store.get("/kept") is not None


@pytest.mark.anyio
async def test_compaction_and_snapshot_while_another_process_writes(
    children: Children, tmp_path: Path
) -> None:
    n = 300
    async with store_for(children) as store:
        base = (await store.status()).revision
        writer = children.spawn("counter", str(n))
        await anyio.to_thread.run_sync(children.go, writer)
        compacted = 0
        snap = tmp_path / "snap.sqlite"
        snap_rev = 0
        with anyio.fail_after(60):
            while (current := (await store.status()).revision) < base + n // 2:
                if current > compacted + 1:
                    await store.compact(current)
                    compacted = current
                await anyio.sleep(0.005)
        snap_size = await store.snapshot(snap)
        assert snap_size > 0
        final = await anyio.to_thread.run_sync(children.result, writer)
        assert final == base + n
        await store.compact(final - 10)
        with pytest.raises(CompactedError):
            await store.range("/c/", prefix=True, revision=final - 11)
        old = await store.range("/c/", prefix=True, revision=final - 10)
        assert old.count == n - 10
        assert (await store.range("/c/", prefix=True)).count == n
    # The snapshot is one consistent cut: a revision and exactly the keys written up to it.
    async with SQLiteStore(snap, expiry_interval=None) as copy:
        snap_rev = (await copy.status()).revision
        assert base + n // 2 <= snap_rev <= base + n
        kvs = (await copy.range("/c/", prefix=True)).kvs
        assert [kv.key for kv in kvs] == [f"/c/{i:05d}".encode() for i in range(snap_rev - base)]
        await copy.txn((), [Put.of("/after-restore", "x")])  # the copy is a working store
