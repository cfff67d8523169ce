"""Volume maintenance that runs beside I/O: probing and rebuilding replicas, re-encryption.

Kept apart from the I/O path in ``_volume``; these functions drive a :class:`Volume` through
its chunk gates, replica set state and write rounds.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import anyio

from ._crypto import Keyring
from ._errors import (
    REPLICA_FAILURES,
    BlockstoreError,
    ConfigError,
    CorruptBlockError,
    InsufficientReplicasError,
    ReplicaUnavailableError,
)
from ._records import FLAG_WRITTEN, RECORD_SIZE
from ._replication import ReplicaHealth, WriteRound

if TYPE_CHECKING:
    from ._volume import Volume

__all__ = ["monitor", "rebuild_replica", "reencrypt_volume"]

_FLAGS = struct.Struct("<I")


# -- rebuild -----------------------------------------------------------------------------------------
async def monitor(vol: Volume) -> None:
    """Probe replicas that are down; rebuild each one that answers again."""
    while True:
        for node_id in vol.state.nodes_in(ReplicaHealth.DOWN):
            try:
                with anyio.fail_after(vol._op_timeout):
                    await vol._replicas[node_id].ping()
            except (*REPLICA_FAILURES, BlockstoreError):
                continue
            await rebuild_replica(vol, node_id)
        await anyio.sleep(vol._probe_interval)


async def rebuild_replica(vol: Volume, node_id: str) -> bool:
    """Bring ``node_id`` up to date while I/O continues; copies only chunks that differ.

    The replica joins the write set first (so it misses nothing from now on), then each chunk
    whose (generation, records digest) differs from a healthy copy is copied under that
    chunk's exclusive gate. Returns False when the rebuild had to stop (a node failed).
    """
    target = vol._replicas[node_id]
    vol.state.mark_rebuilding(node_id)
    vol._log.info("rebuild_started", node=node_id)
    busy = vol._gates.busy_chunks()  # writes in flight now may have missed the target
    try:
        with anyio.fail_after(vol._op_timeout * 4):
            target_states = await target.chunk_states()
        source_states: dict[str, list[tuple[int, bytes]]] = {}
        for chunk in range(vol.spec.chunks):
            placement = vol.placement(chunk)
            if node_id not in placement:
                continue
            if not await _rebuild_chunk(vol, chunk, node_id, target_states, source_states, busy):
                return False
        with anyio.fail_after(vol._op_timeout * 4):
            await target.flush()
    except (*REPLICA_FAILURES, BlockstoreError):
        vol._fail(node_id)
        return False
    if vol.state.health[node_id] is not ReplicaHealth.REBUILDING:
        return False  # failed again while we were copying
    vol.state.mark_healthy(node_id)
    vol.stats.rebuilds_completed += 1
    vol._metrics.rebuilds.labels(volume=vol.spec.name).inc()
    vol._log.info("rebuild_completed", node=node_id)
    return True


async def _rebuild_chunk(
    vol: Volume,
    chunk: int,
    node_id: str,
    target_states: list[tuple[int, bytes]],
    source_states: dict[str, list[tuple[int, bytes]]],
    busy: set[int],
) -> bool:
    for source in vol.state.read_candidates(vol.placement(chunk), exclude=[node_id]):
        try:
            if source not in source_states:
                with anyio.fail_after(vol._op_timeout * 4):
                    source_states[source] = await vol._replicas[source].chunk_states()
        except (*REPLICA_FAILURES, BlockstoreError):
            vol._fail(source)
            continue
        if chunk not in busy and source_states[source][chunk] == target_states[chunk]:
            vol.stats.chunks_skipped += 1
            vol._metrics.chunks_skipped.labels(volume=vol.spec.name).inc()
            return True
        async with vol._gates.exclusive(chunk):
            try:
                with anyio.fail_after(vol._op_timeout * 4):
                    image = await vol._replicas[source].read_chunk(chunk)
            except (*REPLICA_FAILURES, BlockstoreError):
                vol._fail(source)
                continue
            if vol._bad_blocks(image[1], image[2], len(image[2]) // RECORD_SIZE):
                continue  # rotten source: try the next healthy copy
            # A failure here is the target's: it propagates and ends this rebuild.
            with anyio.fail_after(vol._op_timeout * 4):
                await vol._replicas[node_id].write_chunk(chunk, image)
        vol.stats.chunks_copied += 1
        vol._metrics.chunks_copied.labels(volume=vol.spec.name).inc()
        return True
    return False


# -- key rotation ------------------------------------------------------------------------------------
async def reencrypt_volume(vol: Volume) -> int:
    """Re-seal every block not under the current key; returns how many blocks moved.

    Run after :meth:`Keyring.rotate`; afterwards the old key can be retired. I/O continues,
    each chunk is re-sealed alone under its exclusive gate.
    """
    if vol.keyring is None:
        raise ConfigError("reencrypt: the volume has no keyring")
    moved = 0
    for chunk in range(vol.spec.chunks):
        first, count = vol.spec.chunk_blocks(chunk)
        async with vol._gates.exclusive(chunk):
            candidates = vol.state.read_candidates(vol.placement(chunk))
            if not candidates:
                raise InsufficientReplicasError(f"reencrypt: no healthy replica of chunk {chunk}")
            got = await vol._fetch(candidates[0], first, count)
            if got is None:
                raise ReplicaUnavailableError(f"reencrypt: replica {candidates[0]} failed")
            data, records = got
            stale = [
                i
                for i in range(count)
                if _FLAGS.unpack_from(records, i * RECORD_SIZE)[0] & FLAG_WRITTEN
                and Keyring.key_id_of(records[i * RECORD_SIZE : (i + 1) * RECORD_SIZE])
                != vol.keyring.current_id
            ]
            if not stale:
                continue
            if vol._bad_blocks(data, records, count):
                data, records = await _repair_locked(vol, chunk, first, count, candidates[0])
            plain = vol._open(first, data, records, count)
            bs = vol._bs
            for i in stale:
                stored, rec = vol._seal(first + i, plain[i * bs : (i + 1) * bs])
                vol._generations[chunk] += 1
                targets = vol.state.write_targets(vol.placement(chunk))
                round_ = WriteRound(targets, vol.spec.policy)
                for n in targets:
                    comp = vol._replicas[n].submit_write(
                        first + i, stored, rec, chunk, vol._generations[chunk]
                    )
                    try:
                        with anyio.fail_after(vol._op_timeout):
                            await comp.wait()
                        round_.ack(n)
                    except (*REPLICA_FAILURES, BlockstoreError):
                        round_.fail(n)
                        vol._fail(n)
                vol._raise_if_failed(round_)
                moved += 1
    return moved


async def _repair_locked(
    vol: Volume, chunk: int, first: int, count: int, bad_node: str
) -> tuple[bytes, bytes]:
    for other in vol.state.read_candidates(vol.placement(chunk), exclude=[bad_node]):
        got = await vol._fetch(other, first, count)
        if got is not None and not vol._bad_blocks(got[0], got[1], count):
            return got
    raise CorruptBlockError(f"chunk {chunk}: no replica holds a copy that passes its checksums")
