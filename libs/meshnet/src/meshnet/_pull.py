"""Parallel pull: fetch one large object as checksummed ranges from several peers at once.

* :class:`ChunkManifest` names the object: its size, the chunk size and the sha256 of every chunk
  (it comes from a trusted place, e.g. a signed record; the peers serving the bytes are not trusted).
* :class:`PullScheduler` is the sans-I/O core: which chunk a source should fetch next, with work
  stealing (an idle source re-fetches the chunk that has waited longest on a slower one), and what
  to do with a result (verify it; a corrupt chunk is counted and fetched elsewhere; a source that
  fails or keeps lying is dropped).
* :func:`parallel_pull` is the anyio driver over any :class:`RangeSource`; :class:`RpcRangeSource`
  fetches ranges over an :class:`~meshnet._multihome.RpcConnection` (meshnet's authenticated
  transport) and :func:`range_handler` is the serving side.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

import anyio
import attrs
from prometheus_client import CollectorRegistry

import obs
from meshnet._errors import DecodeError, MeshnetError
from meshnet._multihome import RpcConnection

__all__ = [
    "ChunkManifest",
    "PullError",
    "PullResult",
    "PullScheduler",
    "RangeSource",
    "RpcRangeSource",
    "decode_range_request",
    "encode_range_request",
    "parallel_pull",
    "range_handler",
]

DIGEST_BYTES = 32
RANGE_MAGIC = b"mrg1"
_RANGE = struct.Struct(">4sQI")
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 8 << 20  # well under meshnet's 16 MiB frame limit


class PullError(MeshnetError):
    """The object could not be assembled: every source failed or returned corrupt data for a chunk."""


# ---------------------------------------------------------------------------------------------- manifest
def _chunk_size(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (isinstance(value, int) and 1 <= value <= MAX_CHUNK_SIZE):
        raise PullError(f"ChunkManifest.chunk_size must be 1..{MAX_CHUNK_SIZE} bytes, got {value!r}")


def _size(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (isinstance(value, int) and value >= 0):
        raise PullError(f"ChunkManifest.size must be an int >= 0, got {value!r}")


def _as_tuple(value: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(value)


@attrs.frozen
class ChunkManifest:
    """Size, chunk size and one sha256 per chunk (the last chunk may be short)."""

    size: int = attrs.field(validator=_size)
    chunk_size: int = attrs.field(validator=_chunk_size)
    digests: tuple[bytes, ...] = attrs.field(converter=_as_tuple)

    def __attrs_post_init__(self) -> None:
        expected = math.ceil(self.size / self.chunk_size)
        if len(self.digests) != expected:
            raise PullError(f"ChunkManifest.digests has {len(self.digests)} entries; size needs {expected}")
        for i, d in enumerate(self.digests):
            if not isinstance(d, bytes) or len(d) != DIGEST_BYTES:
                raise PullError(f"ChunkManifest.digests[{i}] must be {DIGEST_BYTES} bytes of sha256")

    @classmethod
    def build(cls, data: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ChunkManifest:
        """The manifest of ``data`` (what the owner of the object publishes)."""
        _chunk_size(None, attrs.fields(cls).chunk_size, chunk_size)
        view = memoryview(data)
        digests = [hashlib.sha256(view[o : o + chunk_size]).digest() for o in range(0, len(data), chunk_size)]
        return cls(len(data), chunk_size, tuple(digests))

    @property
    def chunks(self) -> int:
        return len(self.digests)

    def chunk_range(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of chunk ``index``."""
        if not 0 <= index < self.chunks:
            raise PullError(f"chunk index {index} out of range 0..{self.chunks - 1}")
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def verify(self, index: int, data: bytes) -> bool:
        _offset, length = self.chunk_range(index)
        return len(data) == length and hashlib.sha256(data).digest() == self.digests[index]


# ---------------------------------------------------------------------------------------------- core
@attrs.define
class PullResult:
    """What a pull did: the bytes, and where they came from."""

    data: bytes
    bytes_by_source: dict[str, int]
    corrupt_chunks: int  # chunks that failed their checksum and were fetched again
    corrupt_by_source: dict[str, int]
    steals: int  # chunks fetched a second time because their first source was slow
    failed_sources: list[str]


class PullScheduler:
    """Sans-I/O work assignment for a pull; the caller supplies the clock (``now``) and the I/O.

    Invariants: a chunk is accepted once, only with the right digest; a chunk is in flight at no
    more than ``max_fetchers`` sources at once; a source is never asked again for a chunk it
    corrupted; a source that failed (or corrupted ``max_corrupt`` chunks) gets no more work.
    """

    def __init__(
        self, manifest: ChunkManifest, sources: Sequence[str], *, max_fetchers: int = 2, max_corrupt: int = 3
    ) -> None:
        if not sources or len(set(sources)) != len(sources):
            raise PullError(f"sources must be a non-empty list of distinct names, got {list(sources)!r}")
        if max_fetchers < 1 or max_corrupt < 1:
            raise PullError("max_fetchers and max_corrupt must be >= 1")
        self.manifest = manifest
        self.sources = tuple(sources)
        self.max_fetchers = max_fetchers
        self.max_corrupt = max_corrupt
        self._pending: list[int] = list(range(manifest.chunks))  # kept sorted: low offsets first
        self._inflight: dict[int, tuple[float, set[str]]] = {}  # chunk -> (first start, fetchers)
        self._done: set[int] = set()
        self._excluded: dict[int, set[str]] = {}
        self._dead: set[str] = set()
        self.bytes_by_source = dict.fromkeys(sources, 0)
        self.corrupt_by_source = dict.fromkeys(sources, 0)
        self.corrupt_chunks = 0
        self.steals = 0

    def finished(self) -> bool:
        return len(self._done) == self.manifest.chunks

    def live(self, source: str) -> bool:
        return source not in self._dead

    @property
    def failed_sources(self) -> list[str]:
        return [s for s in self.sources if s in self._dead]

    def stuck_reason(self) -> str | None:
        """Why the pull can no longer finish, or None while it can."""
        live = [s for s in self.sources if s not in self._dead]
        if not live:
            return f"all sources failed ({', '.join(self.sources)})"
        for chunk, excluded in self._excluded.items():  # only chunks someone corrupted can be stuck
            if chunk not in self._done and chunk not in self._inflight and all(s in excluded for s in live):
                return f"chunk {chunk}: every live source returned corrupt data for it"
        return None

    def next_chunk(self, source: str, now: float) -> int | None:
        """The chunk ``source`` should fetch now, or None (nothing for it at the moment)."""
        if source in self._dead or self.finished():
            return None
        for pos, chunk in enumerate(self._pending):
            if source not in self._excluded.get(chunk, ()):
                del self._pending[pos]
                self._inflight[chunk] = (now, {source})
                return chunk
        # Nothing pending: steal the chunk that has waited longest at another source.
        candidates = [
            (started, chunk)
            for chunk, (started, fetchers) in self._inflight.items()
            if source not in fetchers
            and len(fetchers) < self.max_fetchers
            and source not in self._excluded.get(chunk, ())
        ]
        if not candidates:
            return None
        _started, chunk = min(candidates)
        self._inflight[chunk][1].add(source)
        self.steals += 1
        return chunk

    def _release(self, source: str, chunk: int) -> None:
        entry = self._inflight.get(chunk)
        if entry is None:
            return
        entry[1].discard(source)
        if not entry[1]:
            del self._inflight[chunk]
            if chunk not in self._done:
                self._pending.append(chunk)
                self._pending.sort()

    def chunk_done(self, source: str, chunk: int, data: bytes) -> bool:
        """Record a fetched chunk; True if it was accepted (right digest, first copy)."""
        if chunk in self._done:
            self._release(source, chunk)
            return False  # a stolen chunk's slower copy
        if not self.manifest.verify(chunk, data):
            self.corrupt_chunks += 1
            self.corrupt_by_source[source] += 1
            self._excluded.setdefault(chunk, set()).add(source)
            if self.corrupt_by_source[source] >= self.max_corrupt:
                self.source_failed(source)
            self._release(source, chunk)
            return False
        self._done.add(chunk)
        self.bytes_by_source[source] += len(data)
        entry = self._inflight.pop(chunk, None)
        if entry is not None:
            entry[1].discard(source)
        return True

    def source_failed(self, source: str, chunk: int | None = None) -> None:
        """``source`` broke (fetch error, connection lost): its chunks go back to the others."""
        self._dead.add(source)
        for c in [c for c, (_t, fetchers) in self._inflight.items() if source in fetchers]:
            self._release(source, c)
        if chunk is not None:
            self._release(source, chunk)


# ---------------------------------------------------------------------------------------------- wire
def encode_range_request(offset: int, length: int) -> bytes:
    return _RANGE.pack(RANGE_MAGIC, offset, length)


def decode_range_request(body: bytes, *, max_length: int = MAX_CHUNK_SIZE) -> tuple[int, int]:
    """Parse a range request (network input: bounded, typed errors only)."""
    if len(body) != _RANGE.size:
        raise DecodeError(f"range request must be {_RANGE.size} bytes, got {len(body)}")
    magic, offset, length = _RANGE.unpack(body)
    if magic != RANGE_MAGIC:
        raise DecodeError(f"range request magic is {magic!r}, expected {RANGE_MAGIC!r}")
    if not 0 < length <= max_length:
        raise DecodeError(f"range request length {length} is not in 1..{max_length}")
    return offset, length


def range_handler(
    read_range: Callable[[int, int], Awaitable[bytes]], *, size: int, max_length: int = MAX_CHUNK_SIZE
) -> Callable[[bytes], Awaitable[bytes]]:
    """A ``serve_calls`` handler serving ranges of an object of ``size`` bytes via ``read_range``."""

    async def handle(request: bytes) -> bytes:
        offset, length = decode_range_request(request, max_length=max_length)
        if offset + length > size:
            raise DecodeError(f"range {offset}+{length} is beyond the object's {size} bytes")
        return await read_range(offset, length)

    return handle


class RangeSource(Protocol):
    """One place a pull can fetch byte ranges from."""

    @property
    def name(self) -> str: ...

    async def fetch(self, offset: int, length: int) -> bytes: ...


class RpcRangeSource:
    """Fetch ranges from a peer over an open :class:`RpcConnection` (served by :func:`range_handler`)."""

    def __init__(self, name: str, rpc: RpcConnection) -> None:
        self._name = name
        self.rpc = rpc

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, offset: int, length: int) -> bytes:
        return await self.rpc.call(encode_range_request(offset, length))


# ---------------------------------------------------------------------------------------------- driver
async def parallel_pull(
    manifest: ChunkManifest,
    sources: Sequence[RangeSource],
    *,
    depth: int = 2,
    max_fetchers: int = 2,
    max_corrupt: int = 3,
    registry: CollectorRegistry | None = None,
) -> PullResult:
    """Assemble the object from all ``sources`` at once; raises :class:`PullError` if it cannot.

    ``depth`` requests are kept in flight per source (hides the round trip). A source that raises is
    dropped and its chunks go to the others; a corrupt chunk is fetched from another source. The
    pull ends as soon as every chunk is in, cancelling the slower copies of stolen chunks.
    """
    if depth < 1:
        raise PullError(f"depth must be >= 1, got {depth}")
    by_name = {s.name: s for s in sources}
    sched = PullScheduler(manifest, list(by_name), max_fetchers=max_fetchers, max_corrupt=max_corrupt)
    buffer = bytearray(manifest.size)
    changed = [anyio.Event()]
    stuck: list[str] = []

    def notify() -> None:
        changed[0].set()
        changed[0] = anyio.Event()

    async def worker(source: RangeSource, scope: anyio.CancelScope) -> None:
        while not sched.finished() and sched.live(source.name):
            chunk = sched.next_chunk(source.name, anyio.current_time())
            if chunk is None:
                reason = sched.stuck_reason()
                if reason is not None:
                    stuck.append(reason)
                    scope.cancel()
                    return
                await changed[0].wait()
                continue
            offset, length = manifest.chunk_range(chunk)
            try:
                data = await source.fetch(offset, length)
            except Exception:
                sched.source_failed(source.name, chunk)
            else:
                if sched.chunk_done(source.name, chunk, data):
                    buffer[offset : offset + length] = data
            if sched.finished():
                scope.cancel()
            elif (reason := sched.stuck_reason()) is not None:
                stuck.append(reason)
                scope.cancel()
            notify()

    if manifest.chunks:
        async with anyio.create_task_group() as tg:
            for source in by_name.values():
                for _ in range(depth):
                    tg.start_soon(worker, source, tg.cancel_scope)
    _record(registry, sched)
    if not sched.finished():
        raise PullError(
            f"pull of {manifest.size} bytes failed: {stuck[0] if stuck else 'no source could serve'}"
        )
    return PullResult(
        data=bytes(buffer),
        bytes_by_source=dict(sched.bytes_by_source),
        corrupt_chunks=sched.corrupt_chunks,
        corrupt_by_source=dict(sched.corrupt_by_source),
        steals=sched.steals,
        failed_sources=sched.failed_sources,
    )


def _record(registry: CollectorRegistry | None, sched: PullScheduler) -> None:
    metrics = obs.Metrics("meshnet", registry=registry)
    metrics.counter("pulled", "Bytes accepted by parallel pulls", unit="bytes").inc(
        sum(sched.bytes_by_source.values())
    )
    metrics.counter("pull_corrupt_ranges", "Ranges that failed their sha256 and were fetched again").inc(
        sched.corrupt_chunks
    )
    metrics.counter("pull_steals", "Ranges re-fetched from a faster source (work stealing)").inc(sched.steals)
    metrics.counter(
        "pull_source_failures", "Sources dropped during a pull (error or repeated corruption)"
    ).inc(len(sched.failed_sources))
