"""The replication buffer: dirty pages waiting for K backups, with per-backup lag accounting.

Pure data structure (no I/O, time passed in). Invariants, property-tested in tests/:

* each page is stored once, at its latest version (a rewrite replaces the queued copy: coalescing);
* a backup *needs* a page from the first write it has not acknowledged until it acknowledges a
  version at least as new as the latest; at most one copy per page per backup is in flight;
* the backup's *replicated sequence* (watermark) W: every write with seq <= W is applied on it.
  ``lag_bytes`` = pages it still needs x page size; ``lag_seconds`` = age of its oldest unapplied write;
* the buffer never silently loses a write: when it is full, the page's data is either kept out
  (pause policy: the workload is stopped, so the page can be re-read later) or the oldest queued
  copy is evicted (drop-oldest policy); either way the page stays *needed* and is listed for
  resync, so watermarks do not move past it until its current content is re-read and acknowledged.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Iterable

import attrs

from ._curves import LinearCurve, ThrottleCurve
from ._errors import DramConfigError, DramStateError

__all__ = ["FullPolicy", "BufferConfig", "ReplicationBuffer", "PutOutcome", "Lag", "OutgoingPage"]


class FullPolicy(enum.Enum):
    """What a full buffer does: stop the workload, or evict the oldest queued copies for resync."""

    PAUSE = "pause"
    DROP_OLDEST = "drop_oldest"


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise DramConfigError(f"{attr.name} must be > 0, got {value!r}")


@attrs.frozen
class BufferConfig:
    """Replication buffer settings. Default 64 MiB = 0.5 s of QEMU's default 128 MiB/s stream."""

    capacity_bytes: int = attrs.field(default=64 << 20, validator=_positive)
    page_size: int = attrs.field(default=4096, validator=_positive)
    full_policy: FullPolicy = attrs.field(default=FullPolicy.PAUSE, converter=FullPolicy)
    curve: ThrottleCurve = attrs.field(factory=LinearCurve)

    def __attrs_post_init__(self) -> None:
        if self.capacity_bytes < self.page_size:
            raise DramConfigError(
                f"capacity_bytes ({self.capacity_bytes}) must hold at least one page ({self.page_size})"
            )

    @property
    def capacity_pages(self) -> int:
        return self.capacity_bytes // self.page_size


@attrs.frozen
class PutOutcome:
    """Result of queueing one dirty page: its sequence number and what the buffer had to give up."""

    seq: int
    stored: bool  # False: kept out because the buffer was full (page listed for resync)
    dropped: tuple[int, ...] = ()  # pages whose queued copy was evicted (drop-oldest policy)


@attrs.frozen
class Lag:
    """How far one backup is behind the primary."""

    bytes: int
    seconds: float
    replicated_seq: int  # every write with seq <= this is applied on the backup


@attrs.frozen
class OutgoingPage:
    page: int
    seq: int
    data: bytes


@attrs.define
class _Stored:
    seq: int
    data: bytes | None  # None: evicted or kept out; must be re-read (resync)


@attrs.define
class _Need:
    first_seq: int  # oldest write to this page the backup has not applied
    first_time: float
    sent_seq: int | None = None  # version in flight, if any
    after_sent: tuple[int, float] | None = None  # first rewrite after that send


@attrs.define
class _Backup:
    need: dict[int, _Need] = attrs.Factory(dict)
    # needed, not in flight, data present; OrderedDict: popping the oldest is O(1) (a dict's is O(n))
    ready: OrderedDict[int, None] = attrs.Factory(OrderedDict)
    heap: list[tuple[int, int]] = attrs.Factory(list)  # lazy (first_seq, page) min-heap

    def push(self, page: int, need: _Need) -> None:
        heapq.heappush(self.heap, (need.first_seq, page))

    def oldest(self) -> tuple[int, _Need] | None:
        while self.heap:
            seq, page = self.heap[0]
            need = self.need.get(page)
            if need is not None and need.first_seq == seq:
                return page, need
            heapq.heappop(self.heap)
        return None


class ReplicationBuffer:
    """Dirty pages queued for every backup; see the module docstring for the invariants."""

    def __init__(self, config: BufferConfig, backups: Iterable[str] = ()) -> None:
        self.config = config
        self._seq = 0
        self._pages: dict[int, _Stored] = {}  # insertion order = capture order (eviction order)
        self._stored_count = 0
        self._resync: dict[int, None] = {}
        self._backups: dict[str, _Backup] = {}
        self._paused = False
        self.pages_sent = 0
        self.pages_acked = 0
        self.pages_dropped = 0
        for name in backups:
            self.add_backup(name)

    # ---- membership -------------------------------------------------------------------------
    @property
    def backups(self) -> tuple[str, ...]:
        return tuple(self._backups)

    @property
    def seq(self) -> int:
        """Sequence number of the latest write captured."""
        return self._seq

    def add_backup(self, name: str, pages: Iterable[int] = (), now: float = 0.0) -> None:
        """Start tracking ``name``; ``pages`` it lacks entirely (a new backup: every page) go to resync."""
        if name in self._backups:
            raise DramStateError(f"backup {name!r} is already known")
        self._backups[name] = _Backup()
        self.ensure_needed(name, pages, now)

    def ensure_needed(self, name: str, pages: Iterable[int], now: float = 0.0) -> None:
        """Mark ``pages`` as needed by ``name`` (idempotent: pages already needed keep their place).

        New needs get fresh sequence numbers, so the backup's watermark never moves back.
        """
        b = self._backup(name)
        for page in pages:
            if page in b.need:
                continue
            self._seq += 1
            need = _Need(self._seq, now)
            b.need[page] = need
            b.push(page, need)
            stored = self._pages.get(page)
            if stored is None:
                self._pages[page] = _Stored(self._seq, None)
                self._resync[page] = None
            elif stored.data is not None:
                b.ready[page] = None
            else:
                self._resync[page] = None

    def remove_backup(self, name: str) -> None:
        """Forget a backup (lost or retired); pages only it needed are freed."""
        b = self._backups.pop(name, None)
        if b is None:
            return
        for page in b.need:
            self._maybe_free(page)

    def set_capacity(self, capacity_bytes: int) -> None:
        """Resize (latency adaptation). Shrinking below the stored bytes just raises the fill."""
        self.config = attrs.evolve(self.config, capacity_bytes=capacity_bytes)

    # ---- writes -----------------------------------------------------------------------------
    @property
    def stored_bytes(self) -> int:
        return self._stored_count * self.config.page_size

    @property
    def fill(self) -> float:
        return min(1.0, self._stored_count / max(1, self.config.capacity_pages))

    @property
    def throttle(self) -> float:
        """Throttle fraction the curve asks for at the current fill."""
        return self.config.curve.fraction(self.fill)

    @property
    def must_pause(self) -> bool:
        """Emergency pause (pause policy): from full until the fill is back below the threshold."""
        if self.config.full_policy is not FullPolicy.PAUSE:
            return False
        if self._stored_count >= self.config.capacity_pages:
            self._paused = True
        elif self.fill < self.config.curve.threshold or self._stored_count == 0:
            self._paused = False
        return self._paused

    def _has_needers(self) -> bool:
        return any(b.need for b in self._backups.values())

    def put(self, page: int, data: bytes, now: float) -> PutOutcome:
        """Queue the current content of a dirty page for every backup."""
        if len(data) != self.config.page_size:
            raise DramConfigError(
                f"data must be exactly page_size={self.config.page_size} bytes, got {len(data)}"
            )
        self._seq += 1
        seq = self._seq
        stored = self._pages.get(page)
        had_data = stored is not None and stored.data is not None
        dropped: list[int] = []
        keep = True
        if not had_data and self._stored_count >= self.config.capacity_pages:
            if self.config.full_policy is FullPolicy.DROP_OLDEST:
                victim = self._evict_oldest(exclude=page)
                if victim is not None:
                    dropped.append(victim)
                else:
                    keep = False
            else:
                keep = False
        if stored is None:
            stored = _Stored(seq, None)
            self._pages[page] = stored
        stored.seq = seq
        if keep:
            if stored.data is None:
                self._stored_count += 1
            stored.data = bytes(data)
            self._resync.pop(page, None)
        else:
            if stored.data is not None:
                self._stored_count -= 1
            stored.data = None
            self._resync[page] = None
        for b in self._backups.values():
            need = b.need.get(page)
            if need is None:
                need = _Need(seq, now)
                b.need[page] = need
                b.push(page, need)
            elif need.sent_seq is not None and need.after_sent is None:
                need.after_sent = (seq, now)
            if need.sent_seq is None:
                if keep:
                    b.ready[page] = None
                else:
                    b.ready.pop(page, None)
        if not self._backups:
            self._maybe_free(page)
        return PutOutcome(seq, keep, tuple(dropped))

    def _evict_oldest(self, exclude: int) -> int | None:
        for page, stored in self._pages.items():
            if stored.data is not None and page != exclude:
                stored.data = None
                self._stored_count -= 1
                self._resync[page] = None
                self.pages_dropped += 1
                for b in self._backups.values():
                    b.ready.pop(page, None)
                return page
        return None

    def resync_pages(self, limit: int) -> list[int]:
        """Pages to re-read from memory and ``put`` again; empty while the buffer is above threshold."""
        if limit <= 0 or (self.fill >= self.config.curve.threshold and self._stored_count > 0):
            return []
        room = self.config.capacity_pages - self._stored_count
        out: list[int] = []
        for page in self._resync:
            if len(out) >= min(limit, room):
                break
            out.append(page)
        return out

    # ---- sending ----------------------------------------------------------------------------
    def next_for(self, backup: str, max_pages: int) -> list[OutgoingPage]:
        """Take up to ``max_pages`` pages ``backup`` needs and that are not in flight to it."""
        b = self._backup(backup)
        out: list[OutgoingPage] = []
        while b.ready and len(out) < max_pages:
            page, _ = b.ready.popitem(last=False)
            stored = self._pages[page]
            assert stored.data is not None
            need = b.need[page]
            need.sent_seq = stored.seq
            out.append(OutgoingPage(page, stored.seq, stored.data))
        self.pages_sent += len(out)
        return out

    def acked(self, backup: str, pages: Iterable[tuple[int, int]]) -> None:
        """``backup`` applied these (page, seq) versions."""
        b = self._backups.get(backup)
        if b is None:
            return
        for page, seq in pages:
            need = b.need.get(page)
            if need is None or need.sent_seq != seq:
                continue  # duplicate or stale ack
            self.pages_acked += 1
            if need.after_sent is None:
                del b.need[page]
                self._maybe_free(page)
                continue
            need.first_seq, need.first_time = need.after_sent
            need.sent_seq = None
            need.after_sent = None
            b.push(page, need)
            if self._pages[page].data is not None:
                b.ready[page] = None

    def failed(self, backup: str, pages: Iterable[int]) -> None:
        """These in-flight pages were lost with their connection: send them again (on any connection)."""
        b = self._backups.get(backup)
        if b is None:
            return
        for page in pages:
            need = b.need.get(page)
            if need is None or need.sent_seq is None:
                continue
            need.sent_seq = None
            need.after_sent = None
            if self._pages[page].data is not None:
                b.ready[page] = None

    def _maybe_free(self, page: int) -> None:
        if any(page in b.need for b in self._backups.values()):
            return
        stored = self._pages.pop(page, None)
        if stored is not None and stored.data is not None:
            self._stored_count -= 1
        self._resync.pop(page, None)

    # ---- accounting -------------------------------------------------------------------------
    def _backup(self, name: str) -> _Backup:
        try:
            return self._backups[name]
        except KeyError:
            raise DramStateError(f"unknown backup {name!r}; known: {sorted(self._backups)}") from None

    def lag(self, backup: str, now: float) -> Lag:
        b = self._backup(backup)
        oldest = b.oldest()
        if oldest is None:
            return Lag(0, 0.0, self._seq)
        _page, need = oldest
        return Lag(len(b.need) * self.config.page_size, max(0.0, now - need.first_time), need.first_seq - 1)

    def pending_pages(self, backup: str) -> int:
        return len(self._backup(backup).need)

    def ready_pages(self, backup: str) -> int:
        return len(self._backup(backup).ready)

    @property
    def resync_count(self) -> int:
        return len(self._resync)
