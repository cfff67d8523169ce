"""Remote replicas over the replication protocol, in one process: ordering, timeouts, reconnects."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import blockstore
import meshnet
from blockstore._chunkstore import ChunkImage
from blockstore._node import serve_storage_node
from blockstore._remote import RemoteReplica
from meshnet.testhosts import DelayRelay

pytestmark = pytest.mark.anyio
MiB = 1 << 20


@contextlib.asynccontextmanager
async def three_nodes(
    root: Path, spec: blockstore.VolumeSpec, credentials: meshnet.MeshCredentials | None
) -> AsyncIterator[dict[str, RemoteReplica]]:
    async with contextlib.AsyncExitStack() as stack:
        replicas = {}
        for i in range(3):
            node = await stack.enter_async_context(
                serve_storage_node(root / f"n{i}", credentials=credentials)
            )
            replicas[f"n{i}"] = await stack.enter_async_context(
                RemoteReplica(f"n{i}", "127.0.0.1", node.port, spec, credentials=credentials)
            )
        yield replicas


@pytest.mark.parametrize("secure", [False, True], ids=["tcp", "meshnet"])
async def test_concurrent_overlapping_writes_leave_replicas_identical(tmp_path: Path, secure: bool) -> None:
    spec = blockstore.VolumeSpec(name="ordered", size=2 * MiB, chunk_size=MiB, replicas=3)
    creds = None
    if secure:
        creds = meshnet.NetworkIdentity.generate("t").credentials_for(meshnet.NodeIdentity.generate())
    async with three_nodes(tmp_path, spec, creds) as replicas, blockstore.Volume(spec, replicas) as vol:
        rng = random.Random(5)

        async def writer(seed: int) -> None:
            for _ in range(40):  # the same few blocks from many tasks: maximal reordering pressure
                await vol.write(rng.randrange(8) * 4096, bytes([seed]) * 4096)

        async with anyio.create_task_group() as tg:
            for seed in range(8):
                tg.start_soon(writer, seed)
        await vol.flush()
        states = [await r.chunk_states() for r in replicas.values()]
        assert states[0] == states[1] == states[2]
        data = [await r.read(0, 8) for r in replicas.values()]
        assert data[0] == data[1] == data[2]


class HangingReplica:
    """A replica whose node stopped answering (like SIGSTOP): submissions never complete."""

    def __init__(self, inner: blockstore.LocalReplica) -> None:
        self.inner = inner
        self.hung = False

    @property
    def node_id(self) -> str:
        return self.inner.node_id

    def submit_write(
        self, first_block: int, data: bytes, records: bytes, chunk: int, generation: int
    ) -> blockstore.Completion:
        if self.hung:
            return blockstore.Completion()  # never set
        return self.inner.submit_write(first_block, data, records, chunk, generation)

    def submit_zero(self, first_block: int, count: int, chunk: int, generation: int) -> blockstore.Completion:
        if self.hung:
            return blockstore.Completion()
        return self.inner.submit_zero(first_block, count, chunk, generation)

    async def _maybe_hang(self) -> None:
        if self.hung:
            await anyio.sleep_forever()

    async def read(self, first_block: int, count: int) -> tuple[bytes, bytes]:
        await self._maybe_hang()
        return await self.inner.read(first_block, count)

    async def flush(self) -> None:
        await self._maybe_hang()
        await self.inner.flush()

    async def chunk_states(self) -> list[tuple[int, bytes]]:
        await self._maybe_hang()
        return await self.inner.chunk_states()

    async def read_chunk(self, chunk: int) -> ChunkImage:
        await self._maybe_hang()
        return await self.inner.read_chunk(chunk)

    async def write_chunk(self, chunk: int, image: ChunkImage) -> None:
        await self._maybe_hang()
        await self.inner.write_chunk(chunk, image)

    async def ping(self) -> None:
        await self._maybe_hang()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_hung_replica_times_out_of_the_write_set_and_is_rebuilt(tmp_path: Path) -> None:
    spec = blockstore.VolumeSpec(name="hang", size=4 * MiB, chunk_size=MiB, replicas=3)
    replicas: dict[str, blockstore.Replica] = {}
    hanging = HangingReplica(blockstore.LocalReplica("n0", tmp_path / "n0", spec.size, 4096, MiB))
    replicas["n0"] = hanging
    for i in (1, 2):
        replicas[f"n{i}"] = blockstore.LocalReplica(f"n{i}", tmp_path / f"n{i}", spec.size, 4096, MiB)
    async with blockstore.Volume(spec, replicas, op_timeout=0.2, probe_interval=0.05) as vol:
        hanging.hung = True
        payload = os.urandom(8192)
        with anyio.fail_after(5):
            await vol.write(MiB, payload)  # completes once n0 times out
        assert vol.health()["n0"] == "down"
        assert await vol.read(MiB, 8192) == payload
        hanging.hung = False
        with anyio.fail_after(10):
            while vol.health()["n0"] != "healthy":  # noqa: ASYNC110 (polling the volume's view)
                await anyio.sleep(0.02)
        assert hanging.inner.store.read(256, 2)[0] == payload
        assert vol.stats.chunks_copied == 1


async def test_coalesced_writes_keep_their_order_around_other_requests(tmp_path: Path) -> None:
    spec = blockstore.VolumeSpec(name="batch", size=2 * MiB, chunk_size=MiB, replicas=1)
    async with (
        serve_storage_node(tmp_path / "n0") as node,
        RemoteReplica("n0", "127.0.0.1", node.port, spec) as replica,
    ):
        await replica.ping()  # connects
        rec = bytes(40)
        first = replica.submit_write(0, b"A" * 4096, rec, 0, 1)
        second = replica.submit_write(0, b"B" * 4096, rec, 0, 2)
        assert first is second  # one WRITES request, one reply, for both
        read_b = replica.submit_read(0, 1)  # closes the batch: it must see B, not C
        third = replica.submit_write(0, b"C" * 4096, rec, 0, 3)
        assert third is not first
        read_c = replica.submit_read(0, 1)
        assert read_b is not None
        assert read_c is not None
        with anyio.fail_after(5):
            await third.wait()
            await read_c.wait()
        assert first.done
        assert first.error is None
        assert replica.read_result(read_b, 1)[0] == b"B" * 4096
        assert replica.read_result(read_c, 1)[0] == b"C" * 4096
        assert node.stores["batch"].generations[0] == 3  # the last write's generation
        assert (await replica.chunk_states())[0][0] == 3


async def test_coalesced_reads_each_get_their_own_blocks_in_wire_order(tmp_path: Path) -> None:
    spec = blockstore.VolumeSpec(name="reads", size=2 * MiB, chunk_size=MiB, replicas=1)
    async with (
        serve_storage_node(tmp_path / "n0") as node,
        RemoteReplica("n0", "127.0.0.1", node.port, spec) as replica,
    ):
        await replica.ping()  # connects
        rec = bytes(40)
        replica.submit_write(0, b"A" * 4096, rec, 0, 1)
        reads = [replica.submit_read(0, 1), replica.submit_read(1, 2)]  # one READS request
        replica.submit_write(0, b"B" * 4096, rec, 0, 2)  # after those reads, before the next
        reads.append(replica.submit_read(0, 1))
        done = [r for r in reads if r is not None]
        assert len(done) == 3
        assert len({id(r) for r in done}) == 3  # each read has its own completion
        with anyio.fail_after(5):
            for r in done:
                await r.wait()
        assert replica.read_result(done[0], 1)[0] == b"A" * 4096
        assert replica.read_result(done[1], 2) == (bytes(8192), bytes(80))  # holes
        assert replica.read_result(done[2], 1)[0] == b"B" * 4096
        bad = replica.submit_read(511, 2)  # past the end: the node refuses the whole request
        assert bad is not None
        with anyio.fail_after(5), pytest.raises(blockstore.BlockstoreError):
            await bad.wait()


async def test_a_read_taken_keeps_nothing_of_the_reply_it_came_in(tmp_path: Path) -> None:
    """The volume's sweeper holds each read's completion for op_timeout after it finished; a
    completion that still held its view of the coalesced reply kept the whole reply alive that
    long (the serving process grew to ~1 GB under 35k remote reads a second)."""
    spec = blockstore.VolumeSpec(name="reads", size=2 * MiB, chunk_size=MiB, replicas=1)
    async with (
        serve_storage_node(tmp_path / "n0") as node,
        RemoteReplica("n0", "127.0.0.1", node.port, spec) as replica,
    ):
        await replica.ping()
        replica.submit_write(0, b"A" * 8192, bytes(80), 0, 1)
        reads = [replica.submit_read(0, 1), replica.submit_read(1, 1)]  # one READS request
        taken = [r for r in reads if r is not None]
        assert len(taken) == 2
        with anyio.fail_after(5):
            for r in taken:
                await r.wait()
        assert [len(r.payload) for r in taken] == [4096 + 40] * 2  # views into the one reply...
        for r in taken:
            data, _records = replica.read_result(r, 1)
            assert data == b"A" * 4096
            assert isinstance(data, bytes)
            assert r.payload == b""  # ...let go once taken


async def test_a_remote_read_nobody_answers_times_out_and_takes_the_replica_out(tmp_path: Path) -> None:
    """Reads coalesced into one READS request are timed out together, through the request."""
    spec = blockstore.VolumeSpec(
        name="silent", size=2 * MiB, chunk_size=MiB, replicas=1, policy=blockstore.WritePolicy(min_replicas=1)
    )
    async with (
        serve_storage_node(tmp_path / "n0") as node,
        DelayRelay(("127.0.0.1", node.port), 0.0) as link,
        RemoteReplica("n0", "127.0.0.1", link.port, spec) as replica,
        blockstore.Volume(spec, {"n0": replica}, op_timeout=0.3, probe_interval=60) as vol,
    ):
        await vol.write(0, b"x" * 8192)
        link.delay = 30.0  # the link stalls: nothing the node sends arrives within op_timeout
        pending = [vol.begin_read(0, 4096), vol.begin_read(4096, 4096)]  # one READS request
        answered = anyio.Event()
        left = [len(pending)]

        def one_done() -> None:
            left[0] -= 1
            if not left[0]:
                answered.set()

        for p in pending:
            assert p is not None
            p.add_done_callback(one_done)
        with anyio.fail_after(5):  # the sweeper fires between 0.3 and 0.34 s
            await answered.wait()
        assert [p.result() for p in pending if p is not None] == [None, None]  # handed back...
        assert vol.health()["n0"] == "down"  # ...with the silent replica out of the set


async def test_begin_read_answers_from_a_remote_replica_and_hands_failures_back(tmp_path: Path) -> None:
    spec = blockstore.VolumeSpec(name="reads", size=2 * MiB, chunk_size=MiB, replicas=3)
    async with three_nodes(tmp_path, spec, None) as replicas, blockstore.Volume(spec, replicas) as vol:
        payload = os.urandom(3 * 4096)
        await vol.write(MiB, payload)

        async def finish(pending: blockstore._volume.PendingRead) -> bytes | None:
            done = anyio.Event()
            pending.add_done_callback(done.set)
            with anyio.fail_after(5):
                await done.wait()
            return pending.result()

        assert vol.begin_read(MiB - 4096, 8192) is None  # two chunks: the async path
        pending = vol.begin_read(MiB + 100, 5000)
        assert pending is not None
        assert await finish(pending) == payload[100:5100]

        target = vol.state.read_candidates(vol.placement(1))[0]
        pending = vol.begin_read(MiB, 4096)
        assert pending is not None
        await replicas[target].aclose()  # the replica goes away with the read in flight
        assert await finish(pending) is None  # handed back to the async path...
        assert vol.health()[target] == "down"  # ...with the replica out of the set
        assert await vol.read(MiB, 4096) == payload[:4096]
