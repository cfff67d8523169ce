"""The anyio driver: a thin loop around the sans-I/O cores, a tracker and an actuator.

``PrimaryReplicator`` scans the tracker every ``scan_interval`` (latency adaptation may change
it), feeds dirty pages to :class:`PrimaryCore`, and runs one sender and one receiver task per
connection so a slow connection never blocks the others or the workload. ``BackupServer`` serves
a :class:`BackupCore` over any number of incoming frame streams.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import TracebackType

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import obs

from ._actions import Action, CloseConnection, ReadPages, Send, SetPaused, SetScanInterval, SetThrottle
from ._backup import BackupCore
from ._errors import DramDecodeError, DramStateError
from ._metrics import DramMetrics
from ._migration import GiveUp, MigrationPlanner, StopAndCopy
from ._primary import PrimaryCore
from ._region import MemoryRegion
from ._stream import STREAM_ERRORS, STREAM_OR_DECODE_ERRORS, FrameStream, TcpFrameStream
from ._throttle import ThrottleActuator
from ._tracker import DirtyTracker

__all__ = ["PrimaryReplicator", "BackupServer", "ScanReport", "MigrationResult"]

_log = obs.get_logger("dram.driver")


@attrs.frozen
class MigrationResult:
    downtime: float  # pause -> target holds every page (seconds)
    total: float
    rounds: int
    final_throttle: float
    expected_downtime: float


@attrs.frozen
class ScanReport:
    pages: int
    seq: int  # buffer sequence after queueing this scan: writes before the scan are <= seq
    seconds: float


@attrs.define
class _Conn:
    stream: FrameStream
    tx: MemoryObjectSendStream[bytes]
    rx: MemoryObjectReceiveStream[bytes]
    scope: anyio.CancelScope


class PrimaryReplicator:
    """Replicate ``region`` (tracked by ``tracker``) through ``core``. Use as ``async with``."""

    def __init__(
        self,
        region: MemoryRegion,
        core: PrimaryCore,
        tracker: DirtyTracker,
        *,
        actuator: ThrottleActuator | None = None,
        metrics: DramMetrics | None = None,
        scan_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_scan: Callable[[ScanReport], None] | None = None,
    ) -> None:
        if region.pages != core.region_pages:
            raise DramStateError(f"region has {region.pages} pages, the core expects {core.region_pages}")
        self.region = region
        self.core = core
        self.tracker = tracker
        self.actuator = actuator
        self.metrics = metrics
        self.clock = clock
        self.scan_interval = scan_interval if scan_interval is not None else core.scan_interval().seconds
        self._fixed_interval = scan_interval is not None
        self._conns: dict[str, _Conn] = {}
        self._tg: TaskGroup | None = None
        self._actuate = anyio.Event()
        self.last_scan: ScanReport | None = None
        self.on_scan = on_scan
        self._extra_throttle = 0.0
        self._migrating_pause = False
        self._sent_seen = 0
        self._dropped_seen = 0

    async def __aenter__(self) -> PrimaryReplicator:
        self.tracker.start()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._scan_loop)
        self._tg.start_soon(self._tick_loop)
        self._tg.start_soon(self._actuator_loop)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(et, e, tb)
        finally:
            for conn in self._conns.values():
                with anyio.CancelScope(shield=True):
                    await conn.stream.aclose()
            self.tracker.close()

    # ---- connections -------------------------------------------------------------------------
    async def add_connection(self, dest: str, backup: str, stream: FrameStream) -> None:
        """Stream pages to ``backup`` over ``stream`` as well (any number of streams per backup)."""
        if self._tg is None:
            raise DramStateError("add_connection needs the replicator running (async with)")
        tx, rx = anyio.create_memory_object_stream[bytes](math.inf)
        conn = _Conn(stream, tx, rx, anyio.CancelScope())
        self._conns[dest] = conn
        self._tg.start_soon(self._run_conn, dest, conn)
        self._perform(self.core.connect(dest, backup, self.clock()))

    async def _run_conn(self, dest: str, conn: _Conn) -> None:
        reason = "closed"
        with conn.scope:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._sender, conn)
                    while True:
                        frame = await conn.stream.receive()
                        self._perform(self.core.receive(dest, frame, self.clock()))
            except STREAM_ERRORS as e:
                reason = type(e).__name__
            except DramDecodeError as e:
                reason = str(e)
        _log.info("connection_lost", dest=dest, reason=reason)
        if self._conns.pop(dest, None) is not None:
            self._perform(self.core.connection_lost(dest, self.clock()))
        with anyio.CancelScope(shield=True):
            await conn.stream.aclose()

    async def _sender(self, conn: _Conn) -> None:
        async for frame in conn.rx:
            await conn.stream.send(frame)

    # ---- loops -------------------------------------------------------------------------------
    def scan_once(self) -> ScanReport:
        """One tracker pass, synchronously (call from the workload's thread between operations)."""
        t0 = time.perf_counter()
        pages = self.tracker.collect()
        now = self.clock()
        read = self.region.read_page
        self._perform(self.core.pages_dirty([(p, read(p)) for p in pages], now))
        report = ScanReport(len(pages), self.core.buffer.seq, time.perf_counter() - t0)
        self.last_scan = report
        if self.on_scan is not None:
            self.on_scan(report)
        return report

    async def _scan_loop(self) -> None:
        while True:
            self.scan_once()
            await anyio.sleep(self.scan_interval)

    async def _tick_loop(self) -> None:
        while True:
            self._perform(self.core.tick(self.clock()))
            self._publish()
            await anyio.sleep(min(self.core.config.heartbeat_interval, 0.05))

    async def _actuator_loop(self) -> None:
        applied: tuple[float, bool] = (0.0, False)
        while True:
            await self._actuate.wait()
            self._actuate = anyio.Event()
            want = (max(self.core.throttle, self._extra_throttle), self.core.paused or self._migrating_pause)
            if self.actuator is not None and want != applied:
                if want[1] != applied[1]:
                    await self.actuator.set_paused(want[1])
                if want[0] != applied[0]:
                    await self.actuator.set_throttle(want[0])
                applied = want

    def _perform(self, actions: list[Action]) -> None:
        queue = list(actions)
        while queue:
            a = queue.pop(0)
            if isinstance(a, Send):
                conn = self._conns.get(a.dest)
                if conn is not None:
                    conn.tx.send_nowait(a.frame)
            elif isinstance(a, SetThrottle | SetPaused):
                if isinstance(a, SetPaused):
                    _log.warning("emergency_pause" if a.paused else "emergency_pause_lifted")
                self._actuate.set()
            elif isinstance(a, ReadPages):
                read = self.region.read_page
                queue += self.core.pages_dirty([(p, read(p)) for p in a.pages], self.clock())
            elif isinstance(a, CloseConnection):
                _log.info("closing_connection", dest=a.dest, reason=a.reason)
                conn = self._conns.get(a.dest)
                if conn is not None:
                    conn.scope.cancel()
            elif isinstance(a, SetScanInterval) and not self._fixed_interval:
                self.scan_interval = a.seconds

    async def migrate(
        self, backup: str, planner: MigrationPlanner | None = None, *, round_seconds: float = 0.05
    ) -> MigrationResult:
        """Two-phase convergence to ``backup``; on success the workload stays paused here.

        The caller then promotes the target (``BackupCore`` state -> new primary) and resumes the
        workload there; ``downtime`` counts from the pause until the target holds every page.
        """
        planner = planner or MigrationPlanner()
        if not planner.region_bytes:
            planner.region_bytes = self.region.size
        with anyio.move_on_after(self.core.config.failover_timeout):
            while backup not in self.core.backups:  # its Join may still be on the way  # noqa: ASYNC110
                await anyio.sleep(0.005)
        if backup not in self.core.backups:
            raise DramStateError(f"{backup!r} is not a replica of this primary: {list(self.core.backups)}")
        t_start = self.clock()
        while True:
            await anyio.sleep(round_seconds)
            now = self.clock()
            lag = self.core.lag(backup, now)
            conns = [c for c in self.core.connections() if c.backup == backup]
            bw = sum(c.throughput for c in conns)
            rtt = max((c.rtt or 0.0 for c in conns), default=0.0)
            decision = planner.observe(lag.bytes, bw, rtt, elapsed=now - t_start)
            if isinstance(decision, GiveUp):
                await self._set_extra_throttle(0.0)
                raise DramStateError(f"migration to {backup!r} gave up: {decision.reason}")
            if isinstance(decision, StopAndCopy):
                break
            await self._set_extra_throttle(decision.throttle)
        # phase 2: stop the workload, send the rest
        self._migrating_pause = True
        if self.actuator is not None:
            await self.actuator.set_paused(True)
        t_pause = self.clock()
        self.scan_once()
        while self.core.lag(backup, self.clock()).bytes > 0:
            self._perform(self.core.tick(self.clock()))
            await anyio.sleep(0.0005)
        t_done = self.clock()
        return MigrationResult(
            downtime=t_done - t_pause,
            total=t_done - t_start,
            rounds=planner.rounds,
            final_throttle=planner.throttle,
            expected_downtime=decision.expected_downtime,
        )

    async def _set_extra_throttle(self, fraction: float) -> None:
        if self.actuator is not None and fraction != self._extra_throttle:
            self._extra_throttle = fraction
            await self.actuator.set_throttle(max(fraction, self.core.throttle))

    def _publish(self) -> None:
        if self.metrics is None:
            return
        m, core, now = self.metrics, self.core, self.clock()
        m.buffer_fill.set(core.buffer.fill)
        m.throttle.set(core.throttle)
        m.paused.set(1.0 if core.paused else 0.0)
        for b in core.backups:
            lag = core.lag(b, now)
            m.lag_bytes.labels(backup=b).set(lag.bytes)
            m.lag_seconds.labels(backup=b).set(lag.seconds)
        for c in core.connections():
            m.conn_throughput.labels(conn=c.dest).set(c.throughput)
        sent, dropped = core.buffer.pages_sent, core.buffer.pages_dropped
        m.pages_sent.inc(max(0, sent - self._sent_seen))
        m.pages_dropped.inc(max(0, dropped - self._dropped_seen))
        self._sent_seen, self._dropped_seen = sent, dropped


class BackupServer:
    """Serves one :class:`BackupCore` on incoming frame streams (one per primary connection)."""

    def __init__(self, core: BackupCore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.core = core
        self.clock = clock
        self._streams: dict[str, FrameStream] = {}
        self._next = 0

    async def serve(self, stream: FrameStream) -> None:
        """Handle one stream until it closes (run one per connection in a task group)."""
        self._next += 1
        conn = f"conn{self._next}"
        self._streams[conn] = stream
        try:
            while True:
                frame = await stream.receive()
                for a in self.core.receive(conn, frame, self.clock()):
                    if isinstance(a, Send) and a.dest in self._streams:
                        await self._streams[a.dest].send(a.frame)
        except STREAM_OR_DECODE_ERRORS:
            pass
        finally:
            self._streams.pop(conn, None)
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def listen_tcp(self, tg: TaskGroup, host: str = "127.0.0.1", port: int = 0) -> int:
        """Accept TCP frame streams in ``tg``; returns the bound port. Loopback/testing transport."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        max_frame = self.core.limits.max_frame

        async def handle(sock: anyio.abc.SocketStream) -> None:
            await self.serve(TcpFrameStream(sock, max_frame))

        tg.start_soon(listener.serve, handle)
        bound: int = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
        return bound
