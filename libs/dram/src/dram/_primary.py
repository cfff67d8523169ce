"""The primary's replication core (sans-I/O): dirty pages in, frames and throttle decisions out.

The primary never waits for backups: ``pages_dirty`` only queues. Frames go out on every live
connection of a backup (direct or through relays), each with a window sized from that
connection's measured throughput x RTT, fastest connection first, so bandwidth grows with
connections and load follows measured speed. A batch not acknowledged within ``ack_timeout``
puts its pages back for the other connections; ``max_timeouts`` in a row close the connection.
"""

from __future__ import annotations

import array
from collections.abc import Iterable

import attrs

from ._actions import (
    Action,
    CloseConnection,
    ReadPages,
    ReplicationConfig,
    Send,
    SetPaused,
    SetScanInterval,
    SetThrottle,
)
from ._buffer import Lag, ReplicationBuffer
from ._errors import DramDecodeError, DramStateError
from ._pb.dram.v1 import Ack, Heartbeat, HeartbeatAck, Join, PageBatch, SeedRequest
from ._tuning import LatencyTuner
from ._wire import WireLimits, decode, encode, make_tag, pack_u64, unpack_u64

__all__ = ["PrimaryCore", "ConnectionStats"]


@attrs.define
class _Batch:
    pages: list[tuple[int, int]]  # (page, buffer seq)
    sent_at: float
    size: int


@attrs.define
class _Conn:
    backup: str
    window: int
    inflight: dict[int, _Batch] = attrs.Factory(dict)
    inflight_bytes: int = 0
    acked_bytes: int = 0
    rate: float = 0.0  # bytes / s, EWMA
    rtt: float | None = None
    min_rtt: float | None = None  # the link's own latency, without our queueing on top
    timeouts: int = 0
    last_heard: float = 0.0
    _rate_mark: tuple[float, int] = (0.0, 0)


@attrs.frozen
class ConnectionStats:
    dest: str
    backup: str
    throughput: float  # bytes / s
    rtt: float | None
    inflight_bytes: int
    window: int


class PrimaryCore:
    """Replication state of one primary. Feed events, perform the returned actions."""

    def __init__(
        self,
        node_id: str,
        region_pages: int,
        config: ReplicationConfig | None = None,
        *,
        epoch: int = 1,
        tags: array.array[int] | None = None,
        tuner: LatencyTuner | None = None,
        now: float = 0.0,
    ) -> None:
        self.node_id = node_id
        self.config = config or ReplicationConfig()
        self.epoch = epoch
        self.region_pages = region_pages
        self.limits = WireLimits(
            region_pages, self.config.buffer.page_size, max(1024, self.config.batch_pages)
        )
        self.buffer = ReplicationBuffer(self.config.buffer)
        if epoch < 1:
            raise DramStateError(f"epoch must be >= 1 (0 is a replica that holds nothing), got {epoch}")
        # A fresh primary's pages carry tag (epoch, 0): unlike a fresh replica's 0, so the first
        # Join of every backup lists every page and the initial content is copied (full sync).
        self.tags = tags if tags is not None else array.array("Q", [make_tag(epoch, 0)]) * region_pages
        if len(self.tags) != region_pages:
            raise DramStateError(f"tags has {len(self.tags)} entries for {region_pages} pages")
        self.tuner = tuner or LatencyTuner()
        self._conns: dict[str, _Conn] = {}
        self._next_batch = 1
        self._last_heartbeat = -1e18
        self._throttle = 0.0
        self._paused = False
        self._last_rate_at = now
        self.closed_connections = 0

    # ---- membership --------------------------------------------------------------------------
    def connect(self, dest: str, backup: str, now: float) -> list[Action]:
        """A connection to ``backup`` is up (``dest`` names it for ``Send``)."""
        if dest in self._conns:
            raise DramStateError(f"connection {dest!r} is already open")
        self._conns[dest] = _Conn(backup, self.config.min_window_bytes, last_heard=now, rate_mark=(now, 0))
        return [self._heartbeat_to(dest, backup, now)]

    def connection_lost(self, dest: str, now: float) -> list[Action]:
        conn = self._conns.pop(dest, None)
        if conn is None:
            return []
        self.buffer.failed(conn.backup, [p for b in conn.inflight.values() for p, _ in b.pages])
        return self._pump(now)

    def remove_backup(self, backup: str) -> None:
        """Forget a backup for good (retired or promoted elsewhere): frees what only it needed."""
        for dest in [d for d, c in self._conns.items() if c.backup == backup]:
            del self._conns[dest]
        self.buffer.remove_backup(backup)

    @property
    def backups(self) -> tuple[str, ...]:
        return self.buffer.backups

    # ---- events ------------------------------------------------------------------------------
    def pages_dirty(self, pages: Iterable[tuple[int, bytes]], now: float) -> list[Action]:
        """Queue the current content of dirty pages (from a tracker scan or a ReadPages)."""
        for page, data in pages:
            if not 0 <= page < self.region_pages:
                raise DramStateError(f"page {page} outside the region (0..{self.region_pages - 1})")
            outcome = self.buffer.put(page, data, now)
            self.tags[page] = make_tag(self.epoch, outcome.seq)
        return self._pump(now) + self._throttle_actions()

    def receive(self, dest: str, frame: bytes, now: float) -> list[Action]:
        """A frame arrived on connection ``dest``. Malformed input closes that connection."""
        conn = self._conns.get(dest)
        try:
            msg = decode(frame, self.limits).message
        except DramDecodeError as e:
            return [CloseConnection(dest, str(e)), *self.connection_lost(dest, now)]
        if isinstance(msg, Join):
            return self._join(dest, msg, now)
        if isinstance(msg, SeedRequest):
            return []  # the primary seeds through Join diffs, replicas serve SeedRequests
        if conn is None:
            return []
        conn.last_heard = now
        actions: list[Action] = []
        if isinstance(msg, Ack):
            batch = conn.inflight.pop(msg.batch_id, None)
            if batch is not None:
                conn.inflight_bytes -= batch.size
                conn.acked_bytes += batch.size
                conn.timeouts = 0
                self.buffer.acked(conn.backup, batch.pages)
                actions += self._rtt(conn, now - batch.sent_at, now)
        elif isinstance(msg, HeartbeatAck):
            actions += self._rtt(conn, now - msg.echo_sent_at, now)
        return actions + self._resync_actions() + self._pump(now)

    def _join(self, dest: str, msg: Join, now: float) -> list[Action]:
        theirs = unpack_u64(msg.tags, "Join.tags")
        conn = self._conns.get(dest)
        if conn is None:
            return []
        diff = [p for p in range(self.region_pages) if theirs[p] != self.tags[p]]
        if conn.backup in self.buffer.backups:
            # a repeated Join (several connections, or a lost heartbeat): only add what is missing
            self.buffer.ensure_needed(conn.backup, diff, now)
        else:
            self.buffer.add_backup(conn.backup, diff, now)
        return self.tick(now)

    def tick(self, now: float) -> list[Action]:
        """Periodic: timeouts, heartbeats, throughput, resync reads, throttle, sending."""
        actions: list[Action] = []
        for dest, conn in list(self._conns.items()):
            expired = [bid for bid, b in conn.inflight.items() if now - b.sent_at > self.config.ack_timeout]
            if expired:
                for bid in expired:
                    batch = conn.inflight.pop(bid)
                    conn.inflight_bytes -= batch.size
                    self.buffer.failed(conn.backup, [p for p, _ in batch.pages])
                conn.timeouts += 1
                conn.window = self.config.min_window_bytes
            silent = now - conn.last_heard > self.config.ack_timeout * self.config.max_timeouts
            if conn.timeouts >= self.config.max_timeouts or silent:
                self.closed_connections += 1
                why = (
                    f"{conn.timeouts} ack timeouts in a row" if not silent else "silent past the ack timeouts"
                )
                actions.append(CloseConnection(dest, why))
                actions += self.connection_lost(dest, now)
        if now - self._last_rate_at >= 0.1:
            self._update_rates(now)
        if now - self._last_heartbeat >= self.config.heartbeat_interval:
            self._last_heartbeat = now
            actions += [self._heartbeat_to(d, c.backup, now) for d, c in self._conns.items()]
        return actions + self._resync_actions() + self._pump(now) + self._throttle_actions()

    def _resync_actions(self) -> list[Action]:
        if not self.buffer.resync_count:
            return []
        resync = self.buffer.resync_pages(self.config.batch_pages * 4)
        return [ReadPages(tuple(resync))] if resync else []

    # ---- internals ---------------------------------------------------------------------------
    def _heartbeat_to(self, dest: str, backup: str, now: float) -> Send:
        wm = self.buffer.lag(backup, now).replicated_seq if backup in self.buffer.backups else 0
        hb = Heartbeat(
            epoch=self.epoch,
            watermark=make_tag(self.epoch, wm),
            sent_at=now,
            backups=list(self.buffer.backups),
            region_pages=self.region_pages,
            page_size=self.config.buffer.page_size,
        )
        return Send(dest, encode(hb))

    def _rtt(self, conn: _Conn, sample: float, now: float) -> list[Action]:
        sample = max(sample, 0.0)
        conn.rtt = sample if conn.rtt is None else 0.2 * sample + 0.8 * conn.rtt
        conn.min_rtt = sample if conn.min_rtt is None else min(conn.min_rtt, sample)
        # Windows and latency adaptation use the minimum RTT: the smoothed one includes the queue
        # our own window builds, and sizing the window from it would feed back (bufferbloat).
        if not self.tuner.observe_rtt(conn.min_rtt, now):
            return []
        profile = self.tuner.profile
        self.buffer.set_capacity(min(self.config.buffer.capacity_bytes, profile.capacity_bytes))
        return [SetScanInterval(profile.scan_interval)]

    def _update_rates(self, now: float) -> None:
        total = 0.0
        for conn in self._conns.values():
            t0, b0 = conn._rate_mark
            dt = now - t0
            if dt > 0:
                sample = (conn.acked_bytes - b0) / dt
                conn.rate = sample if conn.rate == 0 else 0.3 * sample + 0.7 * conn.rate
                conn._rate_mark = (now, conn.acked_bytes)
                rtt = conn.min_rtt if conn.min_rtt is not None else 0.001
                if conn.min_rtt is not None:
                    conn.min_rtt *= 1.05  # age it, so a path that got slower is re-measured
                want = int(2 * conn.rate * max(rtt, 0.001))
                conn.window = max(self.config.min_window_bytes, min(self.config.max_window_bytes, want))
            total += conn.rate
        self._last_rate_at = now
        if total > 0:
            self.tuner.observe_bandwidth(total)

    def _pump(self, now: float) -> list[Action]:
        actions: list[Action] = []
        ps = self.config.buffer.page_size
        # fastest measured connection first: it gets the pages while the slow ones have work in flight
        for dest, conn in sorted(self._conns.items(), key=lambda kv: -kv[1].rate):
            if conn.backup not in self.buffer.backups:
                continue
            while conn.inflight_bytes < conn.window:
                out = self.buffer.next_for(conn.backup, self.config.batch_pages)
                if not out:
                    break
                bid = self._next_batch
                self._next_batch += 1
                wm = self.buffer.lag(conn.backup, now).replicated_seq
                header = PageBatch(
                    batch_id=bid,
                    pages=pack_u64([o.page for o in out]),
                    tags=pack_u64([make_tag(self.epoch, o.seq) for o in out]),
                    watermark=make_tag(self.epoch, wm),
                    sent_at=now,
                )
                size = len(out) * ps
                conn.inflight[bid] = _Batch([(o.page, o.seq) for o in out], now, size)
                conn.inflight_bytes += size
                actions.append(Send(dest, encode(header, b"".join(o.data for o in out))))
        return actions

    def _throttle_actions(self) -> list[Action]:
        actions: list[Action] = []
        paused = self.buffer.must_pause
        if paused != self._paused:
            self._paused = paused
            actions.append(SetPaused(paused))
        fraction = self.buffer.throttle
        if abs(fraction - self._throttle) >= self.config.throttle_step or (fraction == 0) != (
            self._throttle == 0
        ):
            self._throttle = fraction
            actions.append(SetThrottle(fraction))
        return actions

    # ---- observation -------------------------------------------------------------------------
    @property
    def throttle(self) -> float:
        return self._throttle

    @property
    def paused(self) -> bool:
        return self._paused

    def scan_interval(self) -> SetScanInterval:
        return SetScanInterval(self.tuner.profile.scan_interval)

    def lag(self, backup: str, now: float) -> Lag:
        return self.buffer.lag(backup, now)

    def connections(self) -> list[ConnectionStats]:
        return [
            ConnectionStats(d, c.backup, c.rate, c.rtt, c.inflight_bytes, c.window)
            for d, c in self._conns.items()
        ]
