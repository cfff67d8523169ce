"""Replicated volumes with in-process replicas on real sparse files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import blockstore
from blockstore import VolumeSpec, WritePolicy

pytestmark = pytest.mark.anyio
MiB = 1 << 20


def spec(**kw: Any) -> VolumeSpec:
    base: dict[str, Any] = {"name": "vol", "size": 4 * MiB, "chunk_size": MiB, "replicas": 3}
    base.update(kw)
    return VolumeSpec(**base)


async def wait_healthy(vol: blockstore.Volume, limit: float = 10.0) -> None:
    with anyio.fail_after(limit):
        while set(vol.health().values()) != {"healthy"}:  # noqa: ASYNC110 (polling the volume's view)
            await anyio.sleep(0.02)


async def test_write_reaches_every_replica_identically(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        payload = os.urandom(64 * 1024)
        await vol.write(MiB + 4096, payload, fua=True)
        assert await vol.read(MiB + 4096, len(payload)) == payload
        copies = {n: r.store.read(256 + 1, 16) for n, r in reps.items()}
        assert len({c for c in copies.values()}) == 1
        assert next(iter(copies.values()))[0] == payload
        assert {r.store.generations[1] for r in reps.values()} == {1}


async def test_unwritten_space_reads_as_zeros_and_unaligned_io_works(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, _):
        assert await vol.read(0, 8192) == bytes(8192)
        await vol.write(100, b"hello world")
        await vol.write(MiB - 3, b"across")  # crosses a chunk boundary, unaligned on both ends
        assert await vol.read(98, 15) == b"\0\0hello world\0\0"
        assert await vol.read(MiB - 3, 6) == b"across"


async def test_trim_and_write_zeroes_read_back_as_zeros(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, _):
        await vol.write(0, b"\xaa" * 65536)
        await vol.trim(4096, 8192)
        await vol.write_zeroes(20000, 5000)
        data = await vol.read(0, 65536)
        assert data[4096:12288] == bytes(8192)
        assert data[20000:25000] == bytes(5000)
        assert data[:4096] == b"\xaa" * 4096
        assert data[25000:] == b"\xaa" * (65536 - 25000)


async def test_failed_replica_leaves_write_set_without_failing_io_and_is_rebuilt(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        before = os.urandom(4 * MiB)
        await vol.write(0, before)
        reps["n1"].offline = True
        during = os.urandom(8192)
        await vol.write(2 * MiB, during)  # only chunk 2 changes while n1 is away
        assert vol.health()["n1"] == "down"
        assert await vol.read(2 * MiB, 8192) == during
        reps["n1"].offline = False
        await wait_healthy(vol)
        assert vol.stats.rebuilds_completed == 1
        assert vol.stats.chunks_copied == 1  # only the chunk that differs
        assert vol.stats.chunks_skipped == 3
        expected = before[: 2 * MiB] + during + before[2 * MiB + 8192 :]
        assert reps["n1"].store.read(0, 1024)[0] == expected


async def test_io_refused_below_min_replicas(tmp_path: Path, make_local_volume: Callable[..., Any]) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        reps["n0"].offline = True
        reps["n1"].offline = True
        with pytest.raises(blockstore.InsufficientReplicasError, match="min_replicas=2"):
            await vol.write(0, bytes(4096))


async def test_bit_rot_is_detected_repaired_and_counted(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = blockstore.VolumeMetrics(registry)
    async with make_local_volume(tmp_path, spec(), nodes=3, metrics=metrics) as (vol, reps):
        payload = os.urandom(16384)
        await vol.write(0, payload, fua=True)
        os.pwrite(reps["n0"].store._data, b"\x00rot", 4096)  # real bytes on disk go bad
        vol.state.latency.update(n0=1e-9, n1=1.0, n2=1.0)  # n0 looks fastest: reads go there
        assert await vol.read(0, 16384) == payload
        assert vol.stats.bitrot_repaired == 1
        exported = registry.get_sample_value(
            "mycelium_blockstore_bitrot_repaired_blocks_total", {"volume": "vol"}
        )
        assert exported == 1.0
        for r in reps.values():
            assert r.store.read(0, 4)[0] == payload


async def test_rot_on_every_replica_is_an_error_not_garbage(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        await vol.write(0, os.urandom(4096), fua=True)
        for r in reps.values():
            os.pwrite(r.store._data, b"rot", 0)
        with pytest.raises(blockstore.CorruptBlockError, match="no replica holds a good copy"):
            await vol.read(0, 4096)


async def test_large_reads_fetch_chunks_from_several_replicas(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(tmp_path, spec(), nodes=3) as (vol, reps):
        payload = os.urandom(4 * MiB)
        await vol.write(0, payload)
        served: dict[str, int] = {}
        for n, r in reps.items():
            original = r.read

            async def counting(first: int, count: int, _n: str = n, _o: Any = original) -> Any:
                served[_n] = served.get(_n, 0) + 1
                return await _o(first, count)

            r.read = counting  # type: ignore[method-assign]
        assert await vol.read(0, 4 * MiB) == payload
        assert len(served) >= 2


async def test_reopen_keeps_data_and_rebuilds_a_replica_that_fell_behind(tmp_path: Path) -> None:
    s = spec()
    payload = os.urandom(MiB)

    def replicas() -> dict[str, blockstore.LocalReplica]:
        return {
            f"n{i}": blockstore.LocalReplica(f"n{i}", tmp_path / f"n{i}", s.size, 4096, MiB) for i in range(3)
        }

    reps = replicas()
    async with blockstore.Volume(s, reps, probe_interval=0.05) as vol:
        await vol.write(0, os.urandom(MiB))
        reps["n2"].offline = True
        await vol.write(0, payload, fua=True)
    for r in reps.values():
        await r.aclose()
    reps = replicas()  # n2 is back, one generation behind on chunk 0
    async with blockstore.Volume(s, reps, probe_interval=0.05) as vol:
        assert vol.health()["n2"] == "down"
        await wait_healthy(vol)
        assert reps["n2"].store.read(0, 256)[0] == payload
        assert await vol.read(0, MiB) == payload
    for r in reps.values():
        await r.aclose()


async def test_quorum_policy_acks_with_min_replicas(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    async with make_local_volume(
        tmp_path, spec(policy=WritePolicy(ack="quorum", min_replicas=2)), nodes=3
    ) as (
        vol,
        reps,
    ):
        reps["n0"].offline = True
        data = os.urandom(8192)
        await vol.write(0, data)
        assert await vol.read(0, 8192) == data
        await vol.flush()


async def test_encrypted_volume_stores_no_plaintext_and_survives_key_rotation(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    keyring = blockstore.Keyring.generate()
    async with make_local_volume(tmp_path, spec(), nodes=3, keyring=keyring) as (vol, _reps):
        secret = b"top secret block " * 241 + b"xxxxxxx"
        await vol.write(0, secret[:4096] * 4, fua=True)
        raw = (tmp_path / "n0" / "data").read_bytes()
        assert b"top secret" not in raw
        assert await vol.read(0, 16384) == secret[:4096] * 4
        keyring.rotate(2, os.urandom(32))
        assert await vol.reencrypt() == 4
        keyring.retire(1)
        assert keyring.key_ids == [2]
        assert await vol.read(0, 16384) == secret[:4096] * 4


async def test_tampered_ciphertext_with_forged_crc_fails_authentication(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    import struct

    from blockstore._records import checksum_of

    keyring = blockstore.Keyring.generate()
    async with make_local_volume(
        tmp_path, spec(replicas=1, policy=WritePolicy(min_replicas=1)), nodes=1, keyring=keyring
    ) as (vol, reps):
        await vol.write(0, os.urandom(4096), fua=True)
        store = reps["n0"].store
        data, rec = store.read(0, 1)
        forged = bytes([data[0] ^ 1]) + data[1:]
        (flags,) = struct.unpack_from("<I", rec)
        rec = rec[:4] + struct.pack("<I", checksum_of(flags, forged)) + rec[8:]
        store.write(0, forged, rec, 0, store.generations[0])
        with pytest.raises(blockstore.EncryptionError, match="authentication failed"):
            await vol.read(0, 4096)


async def test_new_blocks_carry_crc32c_and_older_crc32_records_still_verify(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    import struct
    import zlib

    import google_crc32c

    from blockstore._records import CHECKSUM_FLAG, FLAG_CRC32C, FLAG_WRITTEN, RECORD

    async with make_local_volume(tmp_path, spec(replicas=1, policy=WritePolicy(min_replicas=1)), nodes=1) as (
        vol,
        reps,
    ):
        store = reps["n0"].store
        new = os.urandom(4096)
        await vol.write(0, new)
        flags, crc = struct.unpack_from("<II", store.read(0, 1)[1])
        assert flags == FLAG_WRITTEN | CHECKSUM_FLAG
        assert crc == (google_crc32c.value(new) if flags & FLAG_CRC32C else zlib.crc32(new))
        old = os.urandom(8192)  # as written before CRC-32C: zlib CRC-32, flag clear
        records = b"".join(
            RECORD.pack(FLAG_WRITTEN, zlib.crc32(old[i : i + 4096]), 0, bytes(12), bytes(16))
            for i in (0, 4096)
        )
        store.write(1, old, records, 0, store.generations[0] + 1)
        assert await vol.read(4096, 8192) == old
        assert vol.read_now(4096, 8192) == old
        os.pwrite(store._data, b"rot", 8192)  # the second old block rots: still caught
        assert vol.read_now(4096, 8192) is None
        with pytest.raises(blockstore.CorruptBlockError):
            await vol.read(8192, 4096)


async def test_in_process_replicas_store_generations_at_flush(
    tmp_path: Path, make_local_volume: Callable[..., Any]
) -> None:
    import struct

    async with make_local_volume(tmp_path, spec(replicas=1, policy=WritePolicy(min_replicas=1)), nodes=1) as (
        vol,
        reps,
    ):
        store = reps["n0"].store

        def stored() -> int:
            raw = (store.directory / "generations").read_bytes().ljust(16, b"\0")
            return int(struct.unpack_from("<Q", raw, 8)[0])

        await vol.write(MiB, os.urandom(4096))
        await vol.write(MiB, os.urandom(4096))
        assert store.generations[1] == 2
        assert stored() == 0  # not yet: one pwrite saved per write
        await vol.flush()
        assert stored() == 2  # durable with the data
        await vol.write(MiB, os.urandom(4096))
    assert stored() == 3  # and at close


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 4096), (61440, 8192), (4096, 65536), (65536, 65536), (12288, 300 * 1024), (0, 1 << 20)],
)
def test_data_written_in_aligned_pieces_lands_byte_for_byte(tmp_path: Path, offset: int, length: int) -> None:
    from blockstore._chunkstore import _pwrite_pieces

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        payload = os.urandom(length)
        _pwrite_pieces(fd, payload, offset)
        assert os.pread(fd, length + 8192, offset - 4096 if offset else 0) == (
            (bytes(4096) if offset else b"") + payload
        )
    finally:
        os.close(fd)
