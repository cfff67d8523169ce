"""The synchronous fast paths (``read_now`` / ``begin_write``) and the deadline sweeper keep the
guarantees of the async paths: same bytes, checksums verified, same ack rules, hung replicas time out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import blockstore
from blockstore import VolumeSpec, WritePolicy
from blockstore._inflight import Deadlines, InflightWrite
from blockstore._replication import RoundOutcome, WriteRound

pytestmark = pytest.mark.anyio
MiB = 1 << 20


def spec(**kw: Any) -> VolumeSpec:
    base: dict[str, Any] = {"name": "vol", "size": 4 * MiB, "chunk_size": MiB, "replicas": 3}
    base.update(kw)
    return VolumeSpec(**base)


async def test_fast_write_and_read_match_the_async_paths(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        payload = os.urandom(8192)
        pending = vol.begin_write(MiB - 4096 * 4, payload)
        assert pending is not None
        assert pending.done  # every target is in this process
        pending.result()
        assert await vol.read(MiB - 4096 * 4, 8192) == payload
        assert vol.read_now(MiB - 4096 * 4 + 100, 5000) == payload[100:5100]
        stored = {r.store.read(MiB // 4096 - 4, 2)[0] for r in reps.values()}
        assert stored == {payload}  # every replica got it, with its records
        assert vol.read_now(3 * MiB, 4096) == bytes(4096)  # holes read as zeros


async def test_fast_write_declines_what_it_cannot_do_without_side_effects(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        before = [r.store.generations[0] for r in reps.values()]
        assert vol.begin_write(100, os.urandom(4096)) is None  # unaligned: read-modify-write
        assert vol.begin_write(0, os.urandom(4096), fua=True) is None  # FUA needs a flush
        assert vol.begin_write(MiB - 4096, os.urandom(8192)) is None  # spans two chunks
        async with vol._gates.exclusive(0):  # a rebuild or repair holds chunk 0
            assert vol.begin_write(0, os.urandom(4096)) is None
        assert [r.store.generations[0] for r in reps.values()] == before
        with pytest.raises(blockstore.OutOfRangeError):
            vol.begin_write(4 * MiB, os.urandom(4096))


async def test_fast_read_leaves_bit_rot_to_the_repairing_path(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        payload = os.urandom(4096)
        await vol.write(0, payload, fua=True)
        for r in reps.values():
            os.pwrite(r.store._data, b"rot", 0)
        assert vol.read_now(0, 4096) is None  # never returns unverified bytes
        with pytest.raises(blockstore.CorruptBlockError):
            await vol.read(0, 4096)


async def test_fast_write_below_min_replicas_is_refused(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(policy=WritePolicy(min_replicas=3)), nodes=3) as (vol, reps):
        reps["n1"].offline = True
        pending = vol.begin_write(0, os.urandom(4096))
        assert pending is not None
        assert pending.done
        with pytest.raises(blockstore.InsufficientReplicasError):
            pending.result()
        assert vol.health()["n1"] == "down"
        assert not vol._gates.busy_chunks()  # the gate was released


async def test_sweeper_times_out_a_quorum_straggler_and_releases_the_gate() -> None:
    failed: list[str] = []
    released: list[int] = []
    deadlines = Deadlines(10.0)
    inflight = InflightWrite(
        WriteRound(["a", "b", "c"], WritePolicy(ack="quorum", min_replicas=2)),
        failed.append,
        lambda: released.append(1),
    )
    completions = {n: blockstore.Completion() for n in "abc"}
    for node, completion in completions.items():
        inflight.track(node, completion)
    deadlines.add(inflight.expire)
    completions["a"].set()
    completions["b"].set()
    with anyio.fail_after(1):
        await inflight.wait()  # decided by the quorum, c still pending
    assert inflight.round.outcome is RoundOutcome.ACKED
    assert released == []  # c has not answered: the chunk gate stays held
    deadlines.sweep(time.monotonic())  # not due yet
    assert failed == []
    deadlines.sweep(time.monotonic() + 10.0)
    assert failed == ["c"]
    assert released == [1]
    completions["c"].set()  # a late answer changes nothing
    assert released == [1]
    assert inflight.round.failed == {"c"}
