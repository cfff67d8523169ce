"""anyio driver: runs a `LatentSpore` core over meshnet's authenticated, encrypted streams.

A short loop around the core, as in the simulator adapter: incoming frames become `Received`
events (the sender id is the one meshnet authenticated, never what the bytes claim), timers are
kept in a deadline table, and sends go out through one bounded queue and one stream per peer.
Sends are best effort, as SWIM assumes of its datagrams: a full queue or a dead connection
drops the message (the protocol's retries and indirect probes cover for it).
"""

from __future__ import annotations

import contextlib
import math
from types import TracebackType

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from meshnet import FramedStream, MeshCredentials, MeshnetError, MeshServer, connect
from spore._gossip import LatentSpore
from spore._gossip_events import (
    Action,
    CancelTimer,
    Event,
    Join,
    Leave,
    MemberChanged,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from spore._metrics import SporeMetrics

__all__ = ["LatentSporeNode"]

_QUEUE = 256


class LatentSporeNode:
    """`async with LatentSporeNode(core, creds, contacts=("127.0.0.1:7001",)) as node: ...`

    `contacts` are "host:port" addresses to join through; members are reached at the first
    address of their signed record.
    """

    def __init__(
        self,
        core: LatentSpore,
        credentials: MeshCredentials,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        contacts: tuple[str, ...] = (),
        metrics: SporeMetrics | None = None,
    ) -> None:
        self.core = core
        self._creds = credentials
        self._host, self._port = host, port
        self._contacts = contacts
        self._metrics = metrics
        self._deadlines: dict[str, float] = {}
        self._timer_changed = anyio.Event()
        self._outboxes: dict[str, MemoryObjectSendStream[bytes]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._server: MeshServer | None = None
        self._closing = False
        self._inbound: dict[str, FramedStream] = {}

    @property
    def address(self) -> str:
        assert self._server is not None, "address is known inside 'async with'"
        return f"{self._host}:{self._server.port}"

    async def __aenter__(self) -> LatentSporeNode:
        self._server = MeshServer(self._creds, self._serve_stream, host=self._host, port=self._port)
        await self._server.__aenter__()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._timer_loop)
        self.feed(Start(self._contacts))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        assert self._server is not None
        self._closing = True  # frames still arriving on the server side are dropped from here on
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(et, e, tb)
        finally:
            await self._server.__aexit__(et, e, tb)

    def join(self, contacts: tuple[str, ...]) -> None:
        self.feed(Join(contacts))

    async def leave(self, linger: float = 0.5) -> None:
        """Announce a graceful leave and give the announcement time to spread."""
        self.feed(Leave())
        await anyio.sleep(linger)

    def feed(self, event: Event) -> None:
        if not self._closing:
            self._apply(self.core.handle(event))

    def _apply(self, actions: list[Action]) -> None:
        now = anyio.current_time()
        for a in actions:
            if isinstance(a, Send):
                self._send(a.dst, a.data)
            elif isinstance(a, SetTimer):
                self._deadlines[a.tag] = now + a.delay
                self._timer_changed.set()
            elif isinstance(a, CancelTimer):
                self._deadlines.pop(a.tag, None)
            elif isinstance(a, MemberChanged) and self._metrics is not None:
                self._metrics.member_changed(self.core)
        if self._metrics is not None:
            self._metrics.sync(self.core)

    async def _timer_loop(self) -> None:
        while True:
            self._timer_changed = anyio.Event()
            if self._deadlines:
                tag, when = min(self._deadlines.items(), key=lambda kv: kv[1])
                delay = max(0.0, when - anyio.current_time())
            else:
                tag, delay = "", math.inf
            with anyio.move_on_after(delay):
                await self._timer_changed.wait()
                continue
            if self._deadlines.get(tag) is not None and self._deadlines[tag] <= anyio.current_time():
                del self._deadlines[tag]
                self.feed(TimerFired(tag))

    async def _serve_stream(self, stream: FramedStream) -> None:
        peer = stream.peer.node_id
        self._inbound[peer] = stream
        try:
            async for frame in stream:
                self.feed(Received(peer, frame))
        except (MeshnetError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        finally:
            if self._inbound.get(peer) is stream:
                del self._inbound[peer]

    def _address_of(self, dst: str) -> tuple[str, int] | None:
        addr = self.core.address_of(dst) or dst
        host, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit():
            return None
        return host, int(port)

    def _send(self, dst: str, data: bytes) -> None:
        box = self._outboxes.get(dst)
        if box is None:
            send, receive = anyio.create_memory_object_stream[bytes](_QUEUE)
            self._outboxes[dst] = box = send
            assert self._tg is not None
            self._tg.start_soon(self._sender, dst, receive)
        with contextlib.suppress(anyio.WouldBlock):  # best effort, like a datagram
            box.send_nowait(data)

    async def _sender(self, dst: str, queue: MemoryObjectReceiveStream[bytes]) -> None:
        """One outgoing connection per destination; on failure, drop what is queued and retry
        on the next message."""
        try:
            async with queue:
                while True:
                    first = await queue.receive()
                    addr = self._address_of(dst)
                    if addr is None:
                        # No advertised address yet (a member we have not learnt): answer on the
                        # authenticated stream it opened to us, if there is one.
                        inbound = self._inbound.get(dst)
                        if inbound is not None:
                            with contextlib.suppress(
                                MeshnetError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError
                            ):
                                await inbound.send(first)
                        continue
                    try:
                        stream = await connect(self._creds, addr[0], addr[1])
                    except (MeshnetError, OSError):
                        continue
                    try:
                        await stream.send(first)
                        while True:
                            await stream.send(await queue.receive())
                    except (MeshnetError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass
                    finally:
                        with anyio.CancelScope(shield=True):
                            await stream.aclose()
        finally:
            self._outboxes.pop(dst, None)
