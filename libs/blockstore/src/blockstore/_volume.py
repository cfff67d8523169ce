"""The volume front end: splits I/O into chunks, seals blocks, replicates, verifies, repairs.

One :class:`Volume` per volume (like Longhorn's engine): every NBD connection to it goes through
this object, so a FLUSH on any connection covers writes completed on all of them (which is what
allows NBD's CAN_MULTI_CONN).

What an acknowledgement means (policy ``ack="all"``, the default): the write reached the page
cache of every live replica of its chunk, at least ``min_replicas`` of them; with FUA, or after a
later FLUSH, it is on stable storage on each of those. With ``ack="quorum"`` only
``min_replicas`` replicas are guaranteed at acknowledgement time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import anyio.abc
import attrs

from ._crypto import Keyring
from ._errors import (
    REPLICA_FAILURES,
    BlockstoreError,
    ConfigError,
    CorruptBlockError,
    InsufficientReplicasError,
    OutOfRangeError,
)
from ._gates import ChunkGates
from ._inflight import Deadlines, InflightWrite
from ._maintenance import monitor, rebuild_replica, reencrypt_volume
from ._observe import VolumeMetrics
from ._pending import ACKED, PendingRead, PendingWrite
from ._placement import StorageNodeInfo, place_chunk
from ._records import FLAG_ENCRYPTED, FLAG_WRITTEN, RECORD_SIZE, bad_blocks, plain_records
from ._remote import RemoteReplica
from ._replica import DONE, Completion, LocalReplica, Replica
from ._replication import ReplicaHealth, ReplicaSetState, RoundOutcome, WriteRound
from ._spec import VolumeSpec

__all__ = ["PendingRead", "PendingWrite", "Volume", "VolumeStats"]


def _expire(completion: Completion, node_id: str) -> None:
    completion.set(TimeoutError(f"replica {node_id} did not answer in time"))  # no-op once answered


@asynccontextmanager
async def _exclusive_all(gates: ChunkGates, chunks: list[int]) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for chunk in chunks:  # ascending order: two multi-chunk writers cannot deadlock
            await stack.enter_async_context(gates.exclusive(chunk))
        yield


@attrs.define
class VolumeStats:
    """Counters a volume keeps about itself (also exported as metrics when obs is wired)."""

    bitrot_repaired: int = 0
    replica_failures: int = 0
    rebuilds_completed: int = 0
    chunks_copied: int = 0
    chunks_skipped: int = 0


class Volume:
    """A replicated virtual disk. Use as ``async with Volume(...) as vol:``."""

    def __init__(
        self,
        spec: VolumeSpec,
        replicas: Mapping[str, Replica],
        nodes: Sequence[StorageNodeInfo] | None = None,
        *,
        keyring: Keyring | None = None,
        op_timeout: float = 5.0,
        probe_interval: float = 0.5,
        metrics: VolumeMetrics | None = None,
    ) -> None:
        if nodes is None:
            nodes = [StorageNodeInfo(n) for n in replicas]
        missing = {n.node_id for n in nodes} - set(replicas)
        if missing:
            raise ConfigError(f"nodes {sorted(missing)}: no replica connection given for them")
        if len(nodes) < spec.replicas:
            raise ConfigError(f"replicas={spec.replicas}: only {len(nodes)} storage nodes given")
        self.spec = spec
        self._replicas = dict(replicas)
        self._nodes = list(nodes)
        self.keyring = keyring
        self._op_timeout = op_timeout
        self._probe_interval = probe_interval
        self.state = ReplicaSetState([n.node_id for n in nodes], spec.policy)
        self.stats = VolumeStats()
        self._metrics = metrics if metrics is not None else VolumeMetrics()
        self._log = self._metrics.log.bind(volume=spec.name)
        self._gates = ChunkGates()
        self._generations = [0] * spec.chunks
        self._placement: dict[int, tuple[str, ...]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._bs = spec.block_size
        self._size = spec.size
        self._bpc = spec.blocks_per_chunk
        self._rebuilt = anyio.Event()
        self._deadlines = Deadlines(op_timeout)
        # Per node, what puts a READS request to it under the sweeper (see begin_read).
        self._read_timers: dict[str, Callable[[Completion], None]] = {
            n: functools.partial(self._time_out_read, n) for n in self._replicas
        }
        # Replicas in this process: their submissions complete synchronously (see read_now).
        self._local_targets = frozenset(n for n, r in self._replicas.items() if isinstance(r, LocalReplica))

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Volume:
        await self._load_generations()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._monitor)
        self._tg.start_soon(self._deadlines.run)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        self._tg = None

    async def _load_generations(self) -> None:
        """Newest generation per chunk across replicas; replicas behind on any chunk get rebuilt."""
        states: dict[str, list[tuple[int, bytes]]] = {}
        for node_id, replica in self._replicas.items():
            try:
                with anyio.fail_after(self._op_timeout):
                    states[node_id] = await replica.chunk_states()
            except REPLICA_FAILURES:
                self._fail(node_id)
        if not states:
            raise InsufficientReplicasError(f"volume {self.spec.name}: no replica answered")
        for chunk in range(self.spec.chunks):
            placement = self.placement(chunk)
            present = [n for n in placement if n in states]
            if not present:
                continue
            best = max(present, key=lambda n: states[n][chunk][0])
            self._generations[chunk] = states[best][chunk][0]
            for n in present:
                if states[n][chunk] != states[best][chunk]:
                    self.state.mark_down(n)  # the monitor rebuilds it from the up-to-date copies

    # -- geometry --------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.spec.size

    @property
    def flush_is_global(self) -> bool:
        return True

    def placement(self, chunk: int) -> tuple[str, ...]:
        found = self._placement.get(chunk)
        if found is None:
            found = place_chunk(self.spec.name, chunk, self._nodes, self.spec.replicas)
            self._placement[chunk] = found
        return found

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.spec.size:
            raise OutOfRangeError(
                f"bytes [{offset}, {offset + length}) outside the volume (size {self.spec.size})"
            )

    def _pieces(self, first_block: int, count: int) -> list[tuple[int, int, int]]:
        """Split a block range at chunk boundaries: (chunk, first_block, count)."""
        out = []
        end = first_block + count
        while first_block < end:
            chunk = first_block // self._bpc
            stop = min(end, (chunk + 1) * self._bpc)
            out.append((chunk, first_block, stop - first_block))
            first_block = stop
        return out

    # -- failure handling ------------------------------------------------------------------------
    def _fail(self, node_id: str) -> None:
        if self.state.mark_down(node_id):
            self.stats.replica_failures += 1
            self._metrics.replica_failures.labels(volume=self.spec.name, node=node_id).inc()
            self._log.warning("replica_down", node=node_id)

    # -- writes ----------------------------------------------------------------------------------
    def _seal(self, first_block: int, data: bytes) -> tuple[bytes, bytes]:
        if self.keyring is None:
            return data, plain_records(data, self._bs)
        return self.keyring.seal(self.spec.name, first_block, data, self._bs)

    async def write(self, offset: int, data: bytes, *, fua: bool = False) -> None:
        self._check(offset, len(data))
        bs = self._bs
        if offset % bs or len(data) % bs:
            await self._write_unaligned(offset, data)
        else:
            pieces = self._pieces(offset // bs, len(data) // bs)
            if len(pieces) == 1:
                await self._write_piece(*pieces[0], data, offset)
            else:
                async with anyio.create_task_group() as tg:
                    for chunk, first, count in pieces:
                        tg.start_soon(self._write_piece, chunk, first, count, data, offset)
        if fua:
            await self.flush()

    def begin_write(self, offset: int, data: bytes, *, fua: bool = False) -> PendingWrite | None:
        """Submit the write to its replicas now, without yielding; None: use :meth:`write`.

        Taken for aligned writes without FUA inside one chunk that no rebuild or repair holds,
        which is the common case. The submission is exactly what :meth:`write` does first; the
        returned :class:`PendingWrite` is done at once when every target is in this process,
        else its ``wait()`` waits for the acknowledgement rule. Submitting in the caller's task
        lets a server queue a whole received batch before the replicas' writers run, so each
        replica gets the batch in one frame write instead of one per request.
        """
        bs = self._bs
        size = len(data)
        if fua or offset % bs or size % bs or not size:
            return None
        if offset < 0 or offset + size > self._size:
            self._check(offset, size)  # raises OutOfRangeError
        first = offset // bs
        chunk = first // self._bpc
        gates = self._gates
        if (first + size // bs - 1) // self._bpc != chunk or gates.is_exclusive(chunk):
            return None
        # No yield from here on, so no rebuild or repair can take the chunk before the write is
        # submitted: the shared gate is entered only if the write is still in flight afterwards
        # (a write every target finished at submission would enter and leave it at once).
        stored, records = self._seal(first, data)
        generation = self._generations[chunk] + 1
        self._generations[chunk] = generation
        placement = self.placement(chunk)
        targets = self.state.write_targets(placement)
        replicas = self._replicas
        submitted = [
            (n, replicas[n].submit_write(first, stored, records, chunk, generation)) for n in targets
        ]
        for _node, completion in submitted:
            if completion is not DONE and (not completion.done or completion.error is not None):
                if not gates.try_enter_shared(chunk):  # pragma: no cover - checked above, no yield since
                    raise AssertionError("chunk gate taken without a yield")
                return PendingWrite(self, self._inflight(chunk, targets, submitted))
        # Every target succeeded already; write_targets guaranteed at least min_replicas of them.
        return ACKED

    async def _write_piece(self, chunk: int, first: int, count: int, data: bytes, offset: int) -> None:
        start = first * self._bs - offset
        payload = data[start : start + count * self._bs]
        stored, records = self._seal(first, payload)
        await self._gates.enter_shared(chunk)
        try:
            generation = self._generations[chunk] + 1
            self._generations[chunk] = generation
            targets = self.state.write_targets(self.placement(chunk))
            submitted = [
                (n, self._replicas[n].submit_write(first, stored, records, chunk, generation))
                for n in targets
            ]
        except BaseException:
            self._gates.leave_shared(chunk)
            raise
        await self._complete(chunk, targets, submitted)

    async def _submit_zero(self, chunk: int, first: int, count: int) -> None:
        await self._gates.enter_shared(chunk)
        try:
            generation = self._generations[chunk] + 1
            self._generations[chunk] = generation
            targets = self.state.write_targets(self.placement(chunk))
            submitted = [(n, self._replicas[n].submit_zero(first, count, chunk, generation)) for n in targets]
        except BaseException:
            self._gates.leave_shared(chunk)
            raise
        await self._complete(chunk, targets, submitted)

    def _inflight(
        self, chunk: int, targets: Sequence[str], submitted: list[tuple[str, Completion]]
    ) -> InflightWrite:
        inflight = InflightWrite(
            WriteRound(targets, self.spec.policy),
            self._fail,
            functools.partial(self._gates.leave_shared, chunk),
        )
        for node_id, completion in submitted:
            inflight.track(node_id, completion)
        if inflight.pending:
            self._deadlines.add(inflight.expire)
        return inflight

    async def _complete(
        self, chunk: int, targets: Sequence[str], submitted: list[tuple[str, Completion]]
    ) -> None:
        """Wait for the round's outcome; the chunk gate is released when every target answered."""
        inflight = self._inflight(chunk, targets, submitted)
        if inflight.settled_now():
            self._raise_if_failed(inflight.round)
            return
        await self._await_round(inflight)

    async def _await_round(self, inflight: InflightWrite) -> None:
        assert self._tg is not None, "use the volume inside `async with` (its sweeper times out replicas)"
        await inflight.wait()
        self._raise_if_failed(inflight.round)

    def _raise_if_failed(self, round_: WriteRound) -> None:
        if round_.outcome is RoundOutcome.FAILED:
            raise InsufficientReplicasError(
                f"write reached {len(round_.acked)} replicas; policy.min_replicas="
                f"{self.spec.policy.min_replicas}"
            )

    async def _write_unaligned(self, offset: int, data: bytes) -> None:
        """Read-modify-write of partial blocks, alone on the chunks it touches."""
        bs = self._bs
        first = offset // bs
        last = (offset + len(data) - 1) // bs
        chunks = sorted({c for c, _, _ in self._pieces(first, last - first + 1)})
        async with _exclusive_all(self._gates, chunks):
            old = bytearray(await self._read_blocks(first, last - first + 1))
            start = offset - first * bs
            old[start : start + len(data)] = data
            for chunk, f, count in self._pieces(first, last - first + 1):
                stored, records = self._seal(f, bytes(old[(f - first) * bs : (f - first + count) * bs]))
                self._generations[chunk] += 1
                targets = self.state.write_targets(self.placement(chunk))
                round_ = WriteRound(targets, self.spec.policy)
                for n in targets:
                    comp = self._replicas[n].submit_write(f, stored, records, chunk, self._generations[chunk])
                    try:
                        with anyio.fail_after(self._op_timeout):
                            await comp.wait()
                        round_.ack(n)
                    except (*REPLICA_FAILURES, BlockstoreError):
                        round_.fail(n)
                        self._fail(n)
                self._raise_if_failed(round_)

    async def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        await self.write_zeroes(offset, length, fua=fua)

    async def write_zeroes(self, offset: int, length: int, *, fua: bool = False) -> None:
        """Whole blocks become holes (read as zeros); partial edge blocks are written with zeros."""
        self._check(offset, length)
        bs = self._bs
        head = -offset % bs
        first = (offset + head) // bs
        last = (offset + length) // bs
        if last <= first:
            await self._write_unaligned(offset, bytes(length))
        else:
            if head:
                await self._write_unaligned(offset, bytes(head))
            tail = (offset + length) - last * bs
            if tail:
                await self._write_unaligned(last * bs, bytes(tail))
            for chunk, f, count in self._pieces(first, last - first):
                await self._submit_zero(chunk, f, count)
        if fua:
            await self.flush()

    async def flush(self) -> None:
        """Stable storage on every live replica for everything completed before this call."""
        if self.spec.policy.ack == "quorum":
            await self._gates.drain_all()
        live = [n for n, h in self.state.health.items() if h is not ReplicaHealth.DOWN]
        flushed = [0]

        async def one(node_id: str) -> None:
            try:
                with anyio.fail_after(self._op_timeout):
                    await self._replicas[node_id].flush()
                flushed[0] += 1
            except (*REPLICA_FAILURES, BlockstoreError):
                self._fail(node_id)

        async with anyio.create_task_group() as tg:
            for n in live:
                tg.start_soon(one, n)
        if flushed[0] < min(self.spec.policy.min_replicas, len(self._nodes)):
            raise InsufficientReplicasError(
                f"flush reached {flushed[0]} replicas; policy.min_replicas={self.spec.policy.min_replicas}"
            )

    # -- reads -----------------------------------------------------------------------------------
    async def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        if length == 0:
            return b""
        bs = self._bs
        first = offset // bs
        last = (offset + length - 1) // bs
        data = await self._read_blocks(first, last - first + 1)
        start = offset - first * bs
        if start == 0 and len(data) == length:
            return data
        return data[start : start + length]

    def begin_read(self, offset: int, length: int) -> PendingRead | None:
        """Submit a read inside one chunk to its nearest remote replica without yielding.

        None when that is not the case (several chunks, an in-process replica, nothing
        connected): then call :meth:`read`. Lets a server queue a received batch of reads in one
        frame per replica and answer each from its completion, with no task per read.
        """
        self._check(offset, length)
        if length == 0:
            return None
        bs = self._bs
        first = offset // bs
        count = (offset + length - 1) // bs - first + 1
        chunk = first // self._bpc
        if (first + count - 1) // self._bpc != chunk:
            return None
        placement = self.placement(chunk)
        state = self.state
        local = self._local_targets
        if local and not local.isdisjoint(state.healthy(placement)):
            return None  # read_now serves it, or the async path (locality first)
        node_id = state.nearest(placement)
        if node_id is None:
            return None
        replica = self._replicas[node_id]
        if not isinstance(replica, RemoteReplica):
            return None
        call = replica.submit_read(first, count, self._read_timers[node_id])
        if call is None:
            return None
        return PendingRead(self, call, node_id, first, count, offset - first * bs, length)

    def _time_out_read(self, node_id: str, call: Completion) -> None:
        """Put a READS request to ``node_id`` under the sweeper: cheaper than a cancel scope per
        read, and one entry per request (expiring it fails the request's reads together)."""
        self._deadlines.add(functools.partial(_expire, call, node_id))

    def read_now(self, offset: int, length: int) -> bytes | None:
        """The read served without yielding, or None: then call :meth:`read` (which does it all).

        Served here only when each piece's chosen replica is in this process, online, and every
        block verifies; a remote replica, a failing one or bit rot to repair takes the async path.
        """
        if not self._local_targets:
            return None
        self._check(offset, length)
        if length == 0:
            return b""
        bs = self._bs
        first = offset // bs
        last = (offset + length - 1) // bs
        bpc = self._bpc
        if first // bpc == last // bpc:  # inside one chunk: the common case
            pieces = [(first // bpc, first, last - first + 1)]
        else:
            pieces = self._pieces(first, last - first + 1)
        parts: list[bytes] = []
        state = self.state
        local_targets = self._local_targets
        for i, (chunk, f, count) in enumerate(pieces):
            placement = self.placement(chunk)
            local = [n for n in state.healthy(placement) if n in local_targets]
            if not local:
                return None
            if len(local) > 1:  # as read_candidates orders them: fastest first
                local.sort(key=state.latency.__getitem__)
            node_id = local[i % len(local)]
            replica = self._replicas[node_id]
            if not isinstance(replica, LocalReplica) or replica.offline:
                return None
            started = time.monotonic()
            try:
                data, records = replica.store.read(f, count)
            except (BlockstoreError, OSError):
                return None  # the async path retries on another replica and marks this one down
            state.observe(node_id, time.monotonic() - started)
            if self._bad_blocks(data, records, count):
                return None
            parts.append(self._open(f, data, records, count))
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        start = offset - first * bs
        if start == 0 and len(data) == length:
            return data
        return data[start : start + length]

    def _local_candidates(self, candidates: list[str]) -> list[str]:
        """The in-process replicas among ``candidates`` (in their order).

        Locality first, as DRBD's primary reads its own disk: a replica in this process answers
        without a network round trip or any remote CPU, whatever the latency estimates say.
        """
        local = self._local_targets
        if not local:
            return []
        return [c for c in candidates if c in local]

    async def _read_blocks(self, first: int, count: int) -> bytes:
        pieces = self._pieces(first, count)
        if len(pieces) == 1:
            return await self._read_piece(*pieces[0], 0)
        parts: list[bytes] = [b""] * len(pieces)

        async def one(i: int, chunk: int, f: int, c: int) -> None:
            parts[i] = await self._read_piece(chunk, f, c, i)

        async with anyio.create_task_group() as tg:  # different chunks from different replicas
            for i, (chunk, f, c) in enumerate(pieces):
                tg.start_soon(one, i, chunk, f, c)
        return b"".join(parts)

    async def _fetch(self, node_id: str, first: int, count: int) -> tuple[bytes, bytes] | None:
        started = time.monotonic()
        replica = self._replicas[node_id]
        try:
            if isinstance(replica, LocalReplica):  # in-process: cannot hang, skip the timeout scope
                data, records = await replica.read(first, count)
            elif isinstance(replica, RemoteReplica) and (
                call := replica.submit_read(first, count, self._read_timers[node_id])
            ):
                await call.wait()
                data, records = replica.read_result(call, count)
            else:
                with anyio.fail_after(self._op_timeout):
                    data, records = await replica.read(first, count)
        except (*REPLICA_FAILURES, BlockstoreError):
            self._fail(node_id)
            return None
        self.state.observe(node_id, time.monotonic() - started)
        return data, records

    async def _read_piece(self, chunk: int, first: int, count: int, spread: int) -> bytes:
        placement = self.placement(chunk)
        tried: list[str] = []
        while True:
            candidates = self.state.read_candidates(placement, exclude=tried)
            if not candidates:
                raise InsufficientReplicasError(
                    f"no healthy replica of chunk {chunk} answered (tried {len(tried)})"
                )
            pool = self._local_candidates(candidates) or candidates  # nearest first
            node_id = pool[spread % len(pool)] if spread else pool[0]
            tried.append(node_id)
            got = await self._fetch(node_id, first, count)
            if got is None:
                continue
            data, records = got
            bad = self._bad_blocks(data, records, count)
            if bad:
                data, records = await self._repair(chunk, first, count, node_id, data, records, bad)
            return self._open(first, data, records, count)

    def _bad_blocks(self, data: bytes, records: bytes, count: int) -> list[int]:
        return bad_blocks(data, records, count, self._bs)

    async def _repair(
        self, chunk: int, first: int, count: int, bad_node: str, data: bytes, records: bytes, bad: list[int]
    ) -> tuple[bytes, bytes]:
        """Bit rot: take the blocks from another replica, verify them, write them back over the rot."""
        async with self._gates.exclusive(chunk):
            for other in self.state.read_candidates(self.placement(chunk), exclude=[bad_node]):
                got = await self._fetch(other, first, count)
                if got is None:
                    continue
                good_data, good_records = got
                if self._bad_blocks(good_data, good_records, count):
                    continue
                fixed = self._replicas[bad_node].submit_write(
                    first, good_data, good_records, chunk, self._generations[chunk]
                )
                try:
                    with anyio.fail_after(self._op_timeout):
                        await fixed.wait()
                except (*REPLICA_FAILURES, BlockstoreError):
                    self._fail(bad_node)
                self.stats.bitrot_repaired += len(bad)
                self._metrics.bitrot_repaired.labels(volume=self.spec.name).inc(len(bad))
                self._log.warning("bitrot_repaired", node=bad_node, first_block=first, blocks=len(bad))
                return good_data, good_records
        raise CorruptBlockError(
            f"blocks {[first + i for i in bad]} failed their checksum and no replica holds a good copy"
        )

    def _open(self, first: int, data: bytes, records: bytes, count: int) -> bytes:
        """Stored bytes to plaintext: holes read as zeros, sealed blocks are decrypted."""
        if count == 1 and records[0] & (FLAG_WRITTEN | FLAG_ENCRYPTED) == FLAG_WRITTEN:
            return data  # the common 4 KiB read of a plain written block: nothing to do
        bs = self._bs
        out: bytearray | None = None
        for i in range(count):
            flags = records[i * RECORD_SIZE]  # the flag bits all live in the first byte
            if flags & FLAG_WRITTEN and not flags & FLAG_ENCRYPTED:
                continue
            if out is None:
                out = bytearray(data)
            if not flags & FLAG_WRITTEN:
                out[i * bs : (i + 1) * bs] = bytes(bs)
            else:
                if self.keyring is None:
                    raise ConfigError(f"block {first + i} is encrypted but the volume has no keyring")
                rec = records[i * RECORD_SIZE : (i + 1) * RECORD_SIZE]
                out[i * bs : (i + 1) * bs] = self.keyring.open(
                    self.spec.name, first + i, data[i * bs : (i + 1) * bs], rec
                )
        return data if out is None else bytes(out)

    # -- maintenance (see _maintenance) ----------------------------------------------------------
    async def _monitor(self) -> None:
        await monitor(self)

    async def rebuild(self, node_id: str) -> bool:
        """Bring ``node_id`` up to date while I/O continues; copies only chunks that differ.

        The replica joins the write set first (so it misses nothing from now on), then each chunk
        whose (generation, records digest) differs from a healthy copy is copied under that
        chunk's exclusive gate. Returns False when the rebuild had to stop (a node failed).
        """
        return await rebuild_replica(self, node_id)

    async def reencrypt(self) -> int:
        """Re-seal every block not under the current key; returns how many blocks moved.

        Run after :meth:`Keyring.rotate`; afterwards the old key can be retired. I/O continues,
        each chunk is re-sealed alone under its exclusive gate.
        """
        return await reencrypt_volume(self)

    def health(self) -> dict[str, str]:
        """Replica health by node id (healthy / rebuilding / down)."""
        return {n: h.value for n, h in self.state.health.items()}
