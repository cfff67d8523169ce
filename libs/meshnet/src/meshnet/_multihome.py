"""Multi-homing: keep live connections to K peers, send to the fastest, fail over at once.

Three layers, as everywhere in Mycelium:

* :class:`PeerSelector` is the sans-I/O core: it is told about connections, probe round trips and
  failures, and ranks the healthy peers (lowest smoothed latency first). No clock, no I/O.
* :class:`RpcConnection` multiplexes request/response calls and health pings over one framed
  channel (a meshnet ``FramedStream`` in production), so a probe never waits behind a long call;
  :func:`serve_calls` is its server side.
* :class:`MultiHomedClient` is the anyio driver: one maintainer task per peer (connect, probe,
  reconnect with backoff) and :meth:`MultiHomedClient.call`, which retries an idempotent call on
  the next peer the moment its connection breaks.

Wire format of one frame: ``kind (1 byte) | call id (8 bytes, big-endian) | body``.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import anyio
import attrs
from prometheus_client import CollectorRegistry

import obs
from meshnet._errors import DecodeError, MeshnetError

__all__ = [
    "CallOutcomeUnknownError",
    "Connector",
    "FrameChannel",
    "MultiHomeConfig",
    "MultiHomeError",
    "MultiHomedClient",
    "NoHealthyPeerError",
    "PeerSelector",
    "PeerStatus",
    "RemoteCallError",
    "RpcConnection",
    "mesh_connector",
    "serve_calls",
]

KIND_CALL, KIND_REPLY, KIND_ERROR, KIND_PING, KIND_PONG = 1, 2, 3, 4, 5
_HEADER = struct.Struct(">BQ")
_MAX_ERROR_BYTES = 4096
_FAILOVER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_log = obs.get_logger("meshnet.multihome")


class MultiHomeError(MeshnetError):
    """Root of the multi-homing and RPC errors."""


class RemoteCallError(MultiHomeError):
    """The peer answered the call with an error: it is an answer, so it is never retried."""


class NoHealthyPeerError(MultiHomeError):
    """No peer could complete the call before its deadline (all down, partitioned or failing)."""


class CallOutcomeUnknownError(MultiHomeError):
    """A non-idempotent call was sent and its connection broke: it may or may not have run."""


class _ConnectionLostError(MultiHomeError):
    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class FrameChannel(Protocol):
    """What the RPC layer needs from a transport: whole frames both ways (meshnet ``FramedStream``)."""

    async def send(self, data: bytes) -> None: ...
    async def receive(self) -> bytes: ...
    async def aclose(self) -> None: ...


#: Opens an authenticated channel to the named peer (see :func:`mesh_connector`).
Connector = Callable[[str], Awaitable[FrameChannel]]


def encode_frame(kind: int, call_id: int, body: bytes = b"") -> bytes:
    return _HEADER.pack(kind, call_id) + body


def decode_frame(frame: bytes) -> tuple[int, int, bytes]:
    """Split a frame; network input, so anything malformed is a :class:`DecodeError`."""
    if len(frame) < _HEADER.size:
        raise DecodeError(f"RPC frame of {len(frame)} bytes is shorter than its {_HEADER.size}-byte header")
    kind, call_id = _HEADER.unpack_from(frame)
    if not KIND_CALL <= kind <= KIND_PONG:
        raise DecodeError(f"RPC frame kind {kind} is not one of 1..5")
    return kind, call_id, frame[_HEADER.size :]


# ---------------------------------------------------------------------------------------------- core
@attrs.frozen
class PeerStatus:
    """A snapshot of what the selector believes about one peer."""

    name: str
    connected: bool
    healthy: bool
    latency: float | None  # smoothed round trip in seconds, None until measured
    failures: int  # consecutive probe/call failures


@attrs.define
class _PeerView:
    connected: bool = False
    latency: float | None = None
    failures: int = 0


class PeerSelector:
    """Ranks peers by health and smoothed latency; pure state, fed by the driver (or a simulator).

    A peer is healthy when it is connected and its last probe or call did not fail. ``alpha`` is the
    weight of a new latency sample in the exponentially weighted moving average (TCP's SRTT uses
    1/8; we take more of each sample so a peer that slows down loses its rank within a few probes).
    """

    def __init__(self, peers: Sequence[str], *, alpha: float = 0.3) -> None:
        if not peers or len(set(peers)) != len(peers):
            raise MultiHomeError(f"peers must be a non-empty list of distinct names, got {list(peers)!r}")
        if not 0 < alpha <= 1:
            raise MultiHomeError(f"alpha must be in (0, 1], got {alpha!r}")
        self.peers = tuple(peers)
        self.alpha = alpha
        self._views = {p: _PeerView() for p in peers}

    def _view(self, peer: str) -> _PeerView:
        try:
            return self._views[peer]
        except KeyError:
            raise MultiHomeError(f"unknown peer {peer!r}; peers are {', '.join(self.peers)}") from None

    def connected(self, peer: str) -> None:
        view = self._view(peer)
        view.connected, view.failures = True, 0

    def disconnected(self, peer: str) -> None:
        view = self._view(peer)
        view.connected = False
        view.failures += 1

    def observe_latency(self, peer: str, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise MultiHomeError(f"latency sample must be finite seconds >= 0, got {seconds!r}")
        view = self._view(peer)
        view.failures = 0
        view.latency = (
            seconds if view.latency is None else (1 - self.alpha) * view.latency + self.alpha * seconds
        )

    def failed(self, peer: str) -> None:
        """A probe timed out or a call broke on this peer: out of the ranking until it recovers."""
        self._view(peer).failures += 1

    def healthy(self, peer: str) -> bool:
        view = self._view(peer)
        return view.connected and view.failures == 0

    def ranking(self, exclude: frozenset[str] = frozenset()) -> list[str]:
        """Healthy peers, fastest first; unmeasured peers after measured ones, then in given order."""
        order = {p: i for i, p in enumerate(self.peers)}
        live = [p for p in self.peers if p not in exclude and self.healthy(p)]
        return sorted(
            live, key=lambda p: (self._views[p].latency is None, self._views[p].latency or 0.0, order[p])
        )

    def best(self) -> str | None:
        ranked = self.ranking()
        return ranked[0] if ranked else None

    def status(self) -> list[PeerStatus]:
        return [
            PeerStatus(p, v.connected, self.healthy(p), v.latency, v.failures) for p, v in self._views.items()
        ]


# ---------------------------------------------------------------------------------------------- RPC
class _Pending:
    __slots__ = ("done", "error", "reply")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: bytes | None = None
        self.error: MultiHomeError | None = None


class RpcConnection:
    """Concurrent calls and pings over one :class:`FrameChannel`; replies matched by call id.

    Use as ``async with RpcConnection.open(channel) as rpc:``, which runs the reader task. When the
    channel breaks, every waiting call fails at once (that is what makes failover immediate).
    """

    def __init__(self, channel: FrameChannel) -> None:
        self.channel = channel
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._closed: str | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, channel: FrameChannel) -> AsyncIterator[RpcConnection]:
        rpc = cls(channel)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rpc._read_loop)
            try:
                yield rpc
            finally:
                tg.cancel_scope.cancel()
                await rpc.aclose("closed by this side")

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def aclose(self, reason: str = "closed") -> None:
        if self._closed is None:
            self._closed = reason
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = _ConnectionLostError(f"connection lost: {self._closed}", sent=True)
                pending.done.set()
        self._pending.clear()
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self.channel.aclose()

    async def _read_loop(self) -> None:
        reason = "peer closed the connection"
        try:
            while True:
                kind, call_id, body = decode_frame(await self.channel.receive())
                pending = self._pending.pop(call_id, None)
                if pending is None:
                    continue  # a reply to a call we gave up on
                if kind == KIND_ERROR:
                    text = body[:_MAX_ERROR_BYTES].decode("utf-8", "replace")
                    pending.error = RemoteCallError(f"peer refused the call: {text}")
                elif kind in (KIND_REPLY, KIND_PONG):
                    pending.reply = body
                else:
                    raise DecodeError(f"unexpected RPC frame kind {kind} from a server")
                pending.done.set()
        except Exception as exc:  # any transport failure ends this connection, nothing else
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose(reason)

    async def _roundtrip(self, kind: int, body: bytes) -> bytes:
        if self._closed is not None:
            raise _ConnectionLostError(f"connection already closed: {self._closed}", sent=False)
        self._next_id += 1
        call_id = self._next_id
        pending = self._pending[call_id] = _Pending()
        try:
            try:
                await self.channel.send(encode_frame(kind, call_id, body))
            except Exception as exc:
                await self.aclose(f"send failed: {exc}")
                raise _ConnectionLostError(f"send failed: {exc}", sent=True) from None
            await pending.done.wait()
        finally:
            self._pending.pop(call_id, None)
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        return pending.reply

    async def call(self, request: bytes) -> bytes:
        """Send one request and wait for its reply (bound it with ``anyio.fail_after``)."""
        return await self._roundtrip(KIND_CALL, request)

    async def ping(self) -> float:
        """One health probe; returns the round trip in seconds (bound it with ``anyio.fail_after``)."""
        started = anyio.current_time()
        await self._roundtrip(KIND_PING, b"")
        return anyio.current_time() - started


CallHandler = Callable[[bytes], Awaitable[bytes]]


async def serve_calls(channel: FrameChannel, handler: CallHandler, *, max_concurrent: int = 64) -> None:
    """Answer pings and run ``handler(request) -> reply`` for every call until the channel closes.

    At most ``max_concurrent`` calls of one connection run at once (bounded memory per client).
    A handler exception is sent back as an error reply (its type and message, no traceback).
    """
    limiter = anyio.CapacityLimiter(max_concurrent)
    send_lock = anyio.Lock()

    async def reply(kind: int, call_id: int, body: bytes) -> None:
        async with send_lock:
            await channel.send(encode_frame(kind, call_id, body))

    async def run_call(call_id: int, request: bytes) -> None:
        async with limiter:
            try:
                answer = await handler(request)
            except Exception as exc:
                await reply(KIND_ERROR, call_id, f"{type(exc).__name__}: {exc}".encode()[:_MAX_ERROR_BYTES])
                return
            await reply(KIND_REPLY, call_id, answer)

    async with anyio.create_task_group() as tg:
        try:
            while True:
                try:
                    frame = await channel.receive()
                except Exception:
                    return  # closed or broken: the client reconnects elsewhere
                kind, call_id, body = decode_frame(frame)
                if kind == KIND_PING:
                    await reply(KIND_PONG, call_id, b"")
                elif kind == KIND_CALL:
                    tg.start_soon(run_call, call_id, body)
                else:
                    raise DecodeError(f"unexpected RPC frame kind {kind} from a client")
        finally:
            tg.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------- driver
def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise MultiHomeError(f"MultiHomeConfig.{attribute.name} must be finite seconds > 0, got {value!r}")


@attrs.frozen
class MultiHomeConfig:
    """Timing of the multi-homed client; defaults aim at failover well under 1 s (our goal).

    A crashed peer process is noticed at once (its kernel closes the TCP connection). A silent one
    (host gone, partition, stalled process) misses a probe: detection takes at most
    ``probe_interval + probe_timeout`` = 0.5 s by default. ``attempt_timeout`` bounds one try of an
    idempotent call on one peer before the next peer gets it.
    """

    probe_interval: float = attrs.field(default=0.2, validator=_positive)
    probe_timeout: float = attrs.field(default=0.3, validator=_positive)
    connect_timeout: float = attrs.field(default=2.0, validator=_positive)
    attempt_timeout: float = attrs.field(default=5.0, validator=_positive)
    call_timeout: float = attrs.field(default=10.0, validator=_positive)
    reconnect_backoff: float = attrs.field(default=0.05, validator=_positive)
    reconnect_backoff_max: float = attrs.field(default=2.0, validator=_positive)
    latency_alpha: float = attrs.field(default=0.3, validator=_positive)


class MultiHomedClient:
    """Live connections to several peers; :meth:`call` goes to the best healthy one.

    ``async with MultiHomedClient(["s1", "s2", "s3"], connector) as client: await client.call(b"..")``.
    ``failovers`` counts calls that moved to another peer after a failure.
    """

    def __init__(
        self,
        peers: Sequence[str],
        connector: Connector,
        config: MultiHomeConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config if config is not None else MultiHomeConfig()
        metrics = obs.Metrics("meshnet", registry=registry)
        self._failover_count = metrics.counter(
            "multihome_failovers", "Calls moved to another peer after the peer in use failed"
        )
        self._failover_time = metrics.histogram(
            "multihome_failover",
            "From a call failing on one peer to its completion on another",
            unit="seconds",
            buckets=_FAILOVER_BUCKETS,
        )
        self.selector = PeerSelector(peers, alpha=min(self.config.latency_alpha, 1.0))
        self._connector = connector
        self._conns: dict[str, RpcConnection] = {}
        self._changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self.failovers = 0

    async def __aenter__(self) -> MultiHomedClient:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for peer in self.selector.peers:
            self._tg.start_soon(self._maintain, peer)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    def status(self) -> list[PeerStatus]:
        return self.selector.status()

    def best(self) -> str | None:
        return self.selector.best()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_healthy(self, count: int = 1, *, within: float = 10.0) -> None:
        """Wait until at least ``count`` peers are connected and answered a probe (TimeoutError)."""
        with anyio.fail_after(within):
            while sum(1 for s in self.status() if s.healthy and s.latency is not None) < count:
                await self._changed.wait()

    async def _maintain(self, peer: str) -> None:
        backoff = self.config.reconnect_backoff
        while True:
            try:
                with anyio.fail_after(self.config.connect_timeout):
                    channel = await self._connector(peer)
            except Exception:
                self.selector.failed(peer)
                self._notify()
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_backoff_max)
                continue
            backoff = self.config.reconnect_backoff
            async with RpcConnection.open(channel) as rpc:
                self._conns[peer] = rpc
                self.selector.connected(peer)
                self._notify()
                try:
                    await self._probe_loop(peer, rpc)
                finally:
                    self._conns.pop(peer, None)
                    self.selector.disconnected(peer)
                    self._notify()
            await anyio.sleep(backoff)

    async def _probe_loop(self, peer: str, rpc: RpcConnection) -> None:
        while not rpc.closed:
            try:
                with anyio.fail_after(self.config.probe_timeout):
                    rtt = await rpc.ping()
            except (TimeoutError, MultiHomeError):
                # Silent peer: drop the connection so calls waiting on it fail over now.
                await rpc.aclose("health probe failed")
                return
            self.selector.observe_latency(peer, rtt)
            self._notify()
            await anyio.sleep(self.config.probe_interval)

    async def call(self, request: bytes, *, idempotent: bool = True, budget: float | None = None) -> bytes:
        """Run ``request`` on the best peer, moving to the next one when a peer fails.

        An idempotent call is retried on another peer after a broken connection or an attempt
        timeout; a non-idempotent one only if it was never sent (else
        :class:`CallOutcomeUnknownError`). A :class:`RemoteCallError` (the peer's answer) is raised
        as is. :class:`NoHealthyPeerError` after ``budget`` seconds (default ``config.call_timeout``).
        """
        budget = self.config.call_timeout if budget is None else budget
        deadline = anyio.current_time() + budget
        tried: set[str] = set()
        last_error = "no peer was ever healthy"
        first_failure: float | None = None
        while True:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise NoHealthyPeerError(f"call not completed within {budget} s: {last_error}")
            ranked = [
                p
                for p in self.selector.ranking(frozenset(tried))
                if p in self._conns and not self._conns[p].closed
            ]
            if not ranked:
                if tried:
                    tried.clear()  # everyone failed once; wait for a peer to come back, then retry
                with anyio.move_on_after(min(remaining, self.config.probe_interval)):
                    await self._changed.wait()
                continue
            peer = ranked[0]
            tried.add(peer)
            started = anyio.current_time()
            try:
                with anyio.fail_after(min(remaining, self.config.attempt_timeout)):
                    reply = await self._conns[peer].call(request)
            except _ConnectionLostError as exc:
                if exc.sent and not idempotent:
                    raise CallOutcomeUnknownError(
                        f"connection to {peer} broke during the call: {exc}"
                    ) from None
                last_error = f"{peer}: {exc}"
            except TimeoutError:
                if not idempotent:
                    raise CallOutcomeUnknownError(
                        f"{peer} did not answer within the attempt timeout"
                    ) from None
                last_error = f"{peer}: no answer within {self.config.attempt_timeout} s"
            else:
                now = anyio.current_time()
                self.selector.observe_latency(peer, now - started)
                if first_failure is not None:
                    self._failover_time.observe(now - first_failure)
                return reply
            if first_failure is None:
                first_failure = anyio.current_time()
            _log.info("call_failover", peer=peer, reason=last_error)
            self.selector.failed(peer)
            self.failovers += 1
            self._failover_count.inc()
            self._notify()


def mesh_connector(
    credentials: object,
    addresses: Mapping[str, tuple[str, int]],
    *,
    expected_node_ids: Mapping[str, str] | None = None,
) -> Connector:
    """A :data:`Connector` over meshnet's authenticated ``connect()``.

    ``addresses`` maps each peer name to ``(host, port)``; with ``expected_node_ids`` the handshake
    also insists on the peer's node id (pinning a peer, not just its network).
    """
    from meshnet._connect import connect
    from meshnet._credentials import MeshCredentials

    if not isinstance(credentials, MeshCredentials):
        raise MultiHomeError(f"credentials must be MeshCredentials, got {type(credentials).__name__}")
    pinned = dict(expected_node_ids or {})

    async def open_channel(peer: str) -> FrameChannel:
        try:
            host, port = addresses[peer]
        except KeyError:
            raise MultiHomeError(f"no address for peer {peer!r}") from None
        return await connect(credentials, host, port, expected_node_id=pinned.get(peer))

    return open_channel
