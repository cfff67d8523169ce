"""Parallel pull: scheduling with work stealing, checksums, failures; in the simulator and over meshnet."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from meshnet import DecodeError, MeshCredentials, NetworkIdentity, NodeIdentity, connect
from meshnet._multihome import RpcConnection
from meshnet._pull import (
    ChunkManifest,
    PullError,
    PullScheduler,
    RangeSource,
    RpcRangeSource,
    decode_range_request,
    encode_range_request,
    parallel_pull,
)
from meshnet.sim import LinkProfile, NodeContext, Simulation, run_seeds, seed_count

BLOB = random.Random(1).randbytes(40_000)


# --------------------------------------------------------------------------- manifest
def test_the_manifest_names_every_chunk_by_its_sha256() -> None:
    m = ChunkManifest.build(BLOB, chunk_size=16_384)
    assert m.chunks == 3
    assert m.chunk_range(2) == (32_768, 40_000 - 32_768)
    assert m.digests[0] == hashlib.sha256(BLOB[:16_384]).digest()
    assert m.verify(1, BLOB[16_384:32_768])
    assert not m.verify(1, BLOB[16_385:32_769])
    assert not m.verify(2, BLOB[32_768:-1])  # short


def test_a_bad_manifest_names_the_field() -> None:
    with pytest.raises(PullError, match=r"ChunkManifest\.digests has 1 entries; size needs 2"):
        ChunkManifest(10, 5, (b"\0" * 32,))
    with pytest.raises(PullError, match=r"ChunkManifest\.chunk_size"):
        ChunkManifest(10, 0, ())
    with pytest.raises(PullError, match=r"digests\[0\] must be 32 bytes"):
        ChunkManifest(3, 5, (b"short",))


@given(st.binary(max_size=40))
def test_decoding_any_range_request_gives_a_range_or_a_decode_error(body: bytes) -> None:
    try:
        offset, length = decode_range_request(body)
    except DecodeError:
        return
    assert encode_range_request(offset, length) == body


# --------------------------------------------------------------------------- scheduler (core)
def manifest_of(chunks: int) -> ChunkManifest:
    return ChunkManifest.build(BLOB[: chunks * 100], chunk_size=100)


def chunk(i: int) -> bytes:
    return BLOB[i * 100 : (i + 1) * 100]


def test_pending_chunks_go_out_in_order_then_idle_sources_steal() -> None:
    s = PullScheduler(manifest_of(3), ["fast", "slow"])
    assert s.next_chunk("slow", 0.0) == 0
    assert s.next_chunk("fast", 0.1) == 1
    assert s.next_chunk("fast", 0.2) == 2
    assert s.chunk_done("fast", 1, chunk(1))
    assert s.chunk_done("fast", 2, chunk(2))
    assert s.next_chunk("fast", 0.3) == 0  # stolen from "slow"
    assert s.steals == 1
    assert s.next_chunk("fast", 0.3) is None  # already fetching it
    assert s.chunk_done("fast", 0, chunk(0))
    assert not s.chunk_done("slow", 0, chunk(0))  # the slower copy is ignored
    assert s.finished()
    assert s.bytes_by_source == {"fast": 300, "slow": 0}


def test_a_chunk_is_never_fetched_by_more_than_max_fetchers() -> None:
    s = PullScheduler(manifest_of(1), ["a", "b", "c"], max_fetchers=2)
    assert s.next_chunk("a", 0) == 0
    assert s.next_chunk("b", 0) == 0
    assert s.next_chunk("c", 0) is None


def test_a_corrupt_chunk_is_counted_and_fetched_from_another_source() -> None:
    s = PullScheduler(manifest_of(2), ["liar", "honest"])
    assert s.next_chunk("liar", 0) == 0
    assert not s.chunk_done("liar", 0, b"x" * 100)
    assert s.corrupt_chunks == 1
    assert s.corrupt_by_source == {"liar": 1, "honest": 0}
    assert s.next_chunk("liar", 0) == 1  # never chunk 0 again
    assert s.next_chunk("honest", 0) == 0


def test_a_source_that_keeps_lying_is_dropped() -> None:
    s = PullScheduler(manifest_of(4), ["liar", "honest"], max_corrupt=2)
    for _ in range(2):
        c = s.next_chunk("liar", 0)
        assert c is not None
        s.chunk_done("liar", c, b"bad")
    assert not s.live("liar")
    assert s.next_chunk("liar", 0) is None
    assert s.failed_sources == ["liar"]


def test_a_failed_source_hands_its_chunks_back() -> None:
    s = PullScheduler(manifest_of(2), ["a", "b"])
    assert s.next_chunk("a", 0) == 0
    assert s.next_chunk("a", 0) == 1
    s.source_failed("a")
    assert s.next_chunk("b", 0) == 0
    assert s.next_chunk("b", 0) == 1


def test_the_scheduler_knows_when_it_is_stuck() -> None:
    s = PullScheduler(manifest_of(1), ["a", "b"])
    assert s.stuck_reason() is None
    for src in ("a", "b"):
        assert s.next_chunk(src, 0) == 0 or s.next_chunk(src, 0) is None
    s.chunk_done("a", 0, b"bad")
    s.chunk_done("b", 0, b"bad")
    assert s.stuck_reason() == "chunk 0: every live source returned corrupt data for it"


# --------------------------------------------------------------------------- the core in the simulator
class PullClient:
    """Drives a PullScheduler from simulator events: depth 2 per source, 1 s request timeout."""

    def __init__(self, manifest: ChunkManifest, sources: list[str]) -> None:
        self.manifest = manifest
        self.sources = sources
        self.sched = PullScheduler(manifest, sources)
        self.buffer = bytearray(manifest.size)
        self.outstanding: dict[str, set[int]] = {s: set() for s in sources}

    def start(self, ctx: NodeContext) -> None:
        self.pump(ctx)

    def pump(self, ctx: NodeContext) -> None:
        for src in self.sources:
            while len(self.outstanding[src]) < 2:
                c = self.sched.next_chunk(src, ctx.now())
                if c is None:
                    break
                self.outstanding[src].add(c)
                offset, length = self.manifest.chunk_range(c)
                ctx.send(src, encode_range_request(offset, length))
                ctx.set_timer(1.0, f"timeout:{src}:{c}")

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        offset = int.from_bytes(payload[:8], "big")
        c = offset // self.manifest.chunk_size
        if c not in self.outstanding[src]:
            return  # late duplicate
        self.outstanding[src].discard(c)
        ctx.cancel_timer(f"timeout:{src}:{c}")
        if self.sched.chunk_done(src, c, payload[8:]):
            o, n = self.manifest.chunk_range(c)
            self.buffer[o : o + n] = payload[8:]
        self.pump(ctx)

    def timer(self, ctx: NodeContext, tag: str) -> None:
        _, src, c = tag.split(":")
        self.outstanding[src].discard(int(c))
        self.sched.source_failed(src, int(c))
        self.pump(ctx)


class RangePeer:
    def __init__(self, blob: bytes, corrupt: bool = False) -> None:
        self.blob = blob
        self.corrupt = corrupt

    def start(self, ctx: NodeContext) -> None:
        pass

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        offset, length = decode_range_request(payload)
        data = self.blob[offset : offset + length]
        if self.corrupt and ctx.rng.random() < 0.5:
            data = bytes(len(data))
        ctx.send(src, offset.to_bytes(8, "big") + data)

    def timer(self, ctx: NodeContext, tag: str) -> None:
        pass


def pull_scenario(seed: int) -> None:
    """Three peers (one lying, one on a slow link, one crashing): the client still gets the exact bytes."""
    rng = random.Random(seed)
    blob = rng.randbytes(rng.randrange(1, 5000))
    manifest = ChunkManifest.build(blob, chunk_size=rng.choice([100, 256, 1000]))
    sim = Simulation(seed, LinkProfile(delay=(0.001, 0.02), fifo=True))
    sim.add_node("liar", lambda: RangePeer(blob, corrupt=True))
    sim.add_node("slow", lambda: RangePeer(blob))
    sim.add_node("crashy", lambda: RangePeer(blob))
    sim.add_node("honest", lambda: RangePeer(blob))
    sim.add_node("client", lambda: PullClient(manifest, ["liar", "slow", "crashy", "honest"]))
    sim.set_link("client", "slow", LinkProfile(delay=(0.2, 0.5), fifo=True))

    def only_verified_bytes(s: Simulation) -> None:
        client = s.node("client", PullClient)
        for c in client.sched._done:
            o, n = manifest.chunk_range(c)
            assert client.buffer[o : o + n] == blob[o : o + n], f"chunk {c} accepted with wrong bytes"

    sim.add_invariant(only_verified_bytes)
    sim.after(rng.uniform(0, 0.05), lambda: sim.crash("crashy"))
    sim.run_until(lambda: sim.node("client", PullClient).sched.finished(), timeout=60.0)
    assert bytes(sim.node("client", PullClient).buffer) == blob


@pytest.mark.sim
def test_the_pull_core_survives_liars_slow_links_and_crashes_in_the_simulator() -> None:
    assert run_seeds(pull_scenario, seeds=range(seed_count(default=100))) >= 1


# --------------------------------------------------------------------------- driver with in-process sources
class MemorySource:
    """An in-process RangeSource for driver unit tests (no network: the integration tests have one)."""

    def __init__(
        self, name: str, blob: bytes, *, delay: float = 0.0, corrupt: bool = False, fail_after: int = -1
    ):
        self._name, self.blob, self.delay, self.corrupt, self.fail_after = (
            name,
            blob,
            delay,
            corrupt,
            fail_after,
        )
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, offset: int, length: int) -> bytes:
        self.calls += 1
        if self.calls == self.fail_after:
            raise ConnectionResetError("peer went away")
        await anyio.sleep(self.delay)
        data = self.blob[offset : offset + length]
        return bytes(len(data)) if self.corrupt else data


def test_parallel_pull_steals_work_from_a_slow_source() -> None:
    manifest = ChunkManifest.build(BLOB, chunk_size=1000)
    fast = MemorySource("fast", BLOB, delay=0.001)
    slow = MemorySource("slow", BLOB, delay=5.0)

    async def main() -> None:
        with anyio.fail_after(10):
            result = await parallel_pull(manifest, [fast, slow])
        assert result.data == BLOB
        assert result.bytes_by_source["fast"] == len(BLOB)
        assert result.steals >= 1

    anyio.run(main)


def test_parallel_pull_counts_and_replaces_corrupt_ranges() -> None:
    manifest = ChunkManifest.build(BLOB, chunk_size=1000)
    registry = CollectorRegistry()

    async def main() -> None:
        result = await parallel_pull(
            manifest,
            [MemorySource("liar", BLOB, corrupt=True), MemorySource("ok", BLOB, delay=0.002)],
            registry=registry,
        )
        assert (
            registry.get_sample_value("mycelium_meshnet_pull_corrupt_ranges_total") == result.corrupt_chunks
        )
        assert registry.get_sample_value("mycelium_meshnet_pulled_bytes_total") == len(BLOB)
        assert registry.get_sample_value("mycelium_meshnet_pull_source_failures_total") == 1
        assert result.data == BLOB
        assert result.corrupt_chunks >= 1
        assert result.corrupt_by_source["ok"] == 0
        assert result.failed_sources == ["liar"]  # dropped after max_corrupt lies

    anyio.run(main)


def test_parallel_pull_survives_a_source_failing_midway() -> None:
    manifest = ChunkManifest.build(BLOB, chunk_size=1000)

    async def main() -> None:
        result = await parallel_pull(
            manifest, [MemorySource("dies", BLOB, fail_after=3), MemorySource("ok", BLOB, delay=0.001)]
        )
        assert result.data == BLOB
        assert result.failed_sources == ["dies"]

    anyio.run(main)


def test_parallel_pull_fails_clearly_when_nobody_has_the_right_bytes() -> None:
    manifest = ChunkManifest.build(BLOB, chunk_size=1000)

    async def main() -> None:
        with pytest.raises(PullError, match="failed"):
            await parallel_pull(
                manifest, [MemorySource("a", BLOB, corrupt=True), MemorySource("b", BLOB, corrupt=True)]
            )

    anyio.run(main)


def test_an_empty_object_needs_no_source() -> None:
    result = anyio.run(parallel_pull, ChunkManifest.build(b""), [MemorySource("a", b"")])
    assert result.data == b""


# --------------------------------------------------------------------------- real peers over meshnet
class PeerProcs:
    def __init__(self, tmp: Path, blob: bytes) -> None:
        self.network = NetworkIdentity.generate("pull-test")
        self.network_file = tmp / "network.json"
        self.network.save(self.network_file)
        self.blob_file = tmp / "blob"
        self.blob_file.write_bytes(blob)
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, *extra: str) -> None:
        argv = [sys.executable, "-m", "meshnet.testhosts._rpcpeer", "--network", str(self.network_file)]
        argv += ["--name", name, "--blob", str(self.blob_file), *extra]
        self.procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)

    def wait_ready(self) -> None:
        for name, proc in self.procs.items():
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            assert line[:1] == ["READY"], f"peer {name} did not start"
            self.ports[name] = int(line[1])

    def credentials(self) -> MeshCredentials:
        return self.network.credentials_for(NodeIdentity.generate())

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


class KilledOnSecondFetch:
    """Wraps a real peer's source and SIGKILLs the peer process as its second range is requested."""

    def __init__(self, inner: RangeSource, proc: subprocess.Popen[str]) -> None:
        self.inner, self.proc, self.fetches = inner, proc, 0

    @property
    def name(self) -> str:
        return self.inner.name

    async def fetch(self, offset: int, length: int) -> bytes:
        self.fetches += 1
        if self.fetches == 2:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(self.proc.wait)
        return await self.inner.fetch(offset, length)


@pytest.fixture
def big_blob() -> bytes:
    return random.Random(7).randbytes(6 * 1024 * 1024 + 12345)


@pytest.fixture
def peer_procs(tmp_path: Path, big_blob: bytes) -> Iterator[PeerProcs]:
    procs = PeerProcs(tmp_path, big_blob)
    try:
        yield procs
    finally:
        procs.close()


@pytest.mark.integration
def test_pulling_from_real_peers_with_a_liar_a_slow_one_and_a_killed_one(
    peer_procs: PeerProcs, big_blob: bytes
) -> None:
    peer_procs.start("honest")
    peer_procs.start("liar", "--corrupt-every", "2")
    peer_procs.start("slow", "--range-delay", "0.5")
    peer_procs.start("doomed", "--range-delay", "0.05")
    peer_procs.wait_ready()
    manifest = ChunkManifest.build(big_blob, chunk_size=256 * 1024)
    creds = peer_procs.credentials()

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            sources = []
            for name, port in peer_procs.ports.items():
                stream = await connect(creds, "127.0.0.1", port)
                rpc = await stack.enter_async_context(RpcConnection.open(stream))
                source: RangeSource = RpcRangeSource(name, rpc)
                if name == "doomed":
                    source = KilledOnSecondFetch(source, peer_procs.procs[name])
                sources.append(source)
            with anyio.fail_after(60):
                result = await parallel_pull(manifest, sources)
        assert result.data == big_blob
        assert result.corrupt_by_source["liar"] >= 1
        assert result.corrupt_by_source["honest"] == 0
        assert "doomed" in result.failed_sources
        assert result.bytes_by_source["honest"] > result.bytes_by_source["slow"]

    anyio.run(main)


# --------------------------------------------------------------------------- scheduler properties
@given(
    chunks=st.integers(min_value=1, max_value=12),
    ops=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["take", "good", "bad", "fail"])),
        max_size=80,
    ),
)
def test_the_scheduler_keeps_its_invariants_under_any_event_order(
    chunks: int, ops: list[tuple[str, str]]
) -> None:
    manifest = manifest_of(chunks)
    s = PullScheduler(manifest, ["a", "b", "c"], max_fetchers=2, max_corrupt=2)
    held: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    accepted: set[int] = set()
    for step, (src, op) in enumerate(ops):
        if op == "take":
            c = s.next_chunk(src, float(step))
            if c is not None:
                assert s.live(src)
                assert c not in held[src]
                held[src].append(c)
        elif op in ("good", "bad") and held[src]:
            c = held[src].pop(0)
            ok = s.chunk_done(src, c, chunk(c) if op == "good" else b"garbage")
            if ok:
                assert op == "good"
                assert c not in accepted  # accepted once
                accepted.add(c)
        elif op == "fail":
            s.source_failed(src)
            held[src].clear()
        fetchers: dict[int, int] = {}
        for chunks_held in held.values():
            for c in chunks_held:
                fetchers[c] = fetchers.get(c, 0) + 1
        assert all(n <= 2 for n in fetchers.values())
        assert s.finished() == (len(accepted) == chunks)
        assert s.bytes_by_source["a"] + s.bytes_by_source["b"] + s.bytes_by_source["c"] == 100 * len(accepted)
