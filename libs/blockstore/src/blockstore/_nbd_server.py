"""anyio driver around :class:`NbdServerConnection`: real NBD clients see a plain disk.

Requests on one connection are served concurrently (clients pipeline up to their queue depth)
and replies go out in completion order. The reader parses every request already received; those
the device can serve without yielding (:class:`blockstore.Volume`'s ``read_now`` / ``begin_write``:
reads from in-process replicas, write submission) are answered inline, and all replies of that
batch leave in one write. Writes waiting for storage nodes and reads submitted to them
(``begin_read``) are answered from completion callbacks. The rest run on reused per-connection
workers.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from anyio.streams.tls import TLSStream

from . import _nbd_proto as p
from ._errors import BlockstoreError
from ._nbd import (
    ExportInfo,
    NbdDisconnect,
    NbdExportChosen,
    NbdRequest,
    NbdServerConnection,
    NbdStartTls,
    NeedData,
)

__all__ = ["BlockDevice", "NbdServer", "serve_nbd"]


class BlockDevice(Protocol):
    """What the NBD server exports. :class:`blockstore.Volume` implements it."""

    @property
    def size(self) -> int: ...

    @property
    def flush_is_global(self) -> bool:
        """True when a flush covers writes completed through any handle (allows CAN_MULTI_CONN)."""
        ...

    async def read(self, offset: int, length: int) -> bytes: ...

    async def write(self, offset: int, data: bytes, *, fua: bool = False) -> None: ...

    async def flush(self) -> None: ...

    async def trim(self, offset: int, length: int, *, fua: bool = False) -> None: ...

    async def write_zeroes(self, offset: int, length: int, *, fua: bool = False) -> None: ...


@attrs.define
class NbdServer:
    """A running server; ``port`` is the bound TCP port."""

    port: int
    exports: dict[str, ExportInfo]
    connections_served: int = 0
    requests_failed: int = 0


_CMD_READ = p.CMD_READ
_CMD_WRITE = p.CMD_WRITE
_FLAG_FUA = p.CMD_FLAG_FUA

# Inline replies beyond this many bytes go out before the rest of the batch is served, so a batch of
# large reads streams to the client instead of waiting for the last read (which lost pipelining).
_SEND_EARLY = 256 * 1024


class _Outbox:
    """Replies from concurrent requests, written by one task in as few syscalls as possible."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ready = anyio.Event()
        self._idle = anyio.Event()
        self._sending = False
        self._closing = False
        self._stream: anyio.abc.ByteStream | None = None

    def put(self, data: bytes) -> None:
        parts = self._parts
        parts.append(data)
        if len(parts) == 1:  # else the writer was woken when the first one arrived
            self._ready.set()

    def put_many(self, parts: list[bytes]) -> None:
        """Queue several replies with one wake-up (the writer joins them into one send)."""
        if parts:
            waiting = self._parts
            woken = bool(waiting)
            waiting.extend(parts)
            if not woken:
                self._ready.set()

    def close(self) -> None:
        self._closing = True
        self._ready.set()

    async def run(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            if self._parts:
                data = b"".join(self._parts)
                self._parts.clear()
                self._sending = True
                try:
                    await self._stream.send(data)
                finally:
                    self._sending = False
                    self._idle.set()
            if self._closing and not self._parts:
                return

    async def start_tls(self, stream: anyio.abc.ByteStream, context: ssl.SSLContext) -> anyio.abc.ByteStream:
        """Flush what is queued (the STARTTLS ack) in clear, then switch both directions to TLS."""
        while self._parts or self._sending:
            self._idle = anyio.Event()
            self._ready.set()
            await self._idle.wait()
        tls_stream = await TLSStream.wrap(
            stream, server_side=True, ssl_context=context, standard_compatible=False
        )
        self._stream = tls_stream
        return tls_stream


async def _serve_request(
    device: BlockDevice, conn: NbdServerConnection, req: NbdRequest, outbox: _Outbox, server: NbdServer
) -> None:
    try:
        if req.command == p.CMD_READ:
            data = await device.read(req.offset, req.length)
            outbox.put_many([conn.read_reply_header(req.handle, req.offset, len(data)), data])
            return
        else:
            if req.command == p.CMD_WRITE:
                await device.write(req.offset, req.data, fua=req.fua)
            elif req.command == p.CMD_FLUSH:
                await device.flush()
            elif req.command == p.CMD_TRIM:
                await device.trim(req.offset, req.length, fua=req.fua)
            elif req.command == p.CMD_WRITE_ZEROES:
                await device.write_zeroes(req.offset, req.length, fua=req.fua)
            out = conn.reply(req.handle)
    except BlockstoreError as exc:
        server.requests_failed += 1
        out = conn.reply(req.handle, exc.errno or p.EIO, str(exc))
    except Exception as exc:  # never let one request kill the connection or the server
        server.requests_failed += 1
        out = conn.reply(req.handle, p.EIO, f"internal error: {type(exc).__name__}")
    outbox.put(out)


class _Workers:
    """Request workers of one connection, grown on demand (up to ``limit``) and reused.

    Reusing a worker is cheaper than spawning a task per request; growing when all are busy keeps
    every request the client pipelines in flight at once. Jobs wait in a deque and an idle worker
    is woken by its own event (no memory-object stream: that machinery cost more than the work).
    """

    def __init__(self, tg: anyio.abc.TaskGroup, limit: int = 256) -> None:
        self._tg = tg
        self._limit = limit
        self._count = 0
        self._jobs: deque[Callable[[], Awaitable[None]]] = deque()
        self._idle: list[anyio.Event] = []
        self._closed = False

    def submit(self, job: Callable[[], Awaitable[None]]) -> None:
        self._jobs.append(job)
        if self._idle:
            self._idle.pop().set()
        elif self._count < self._limit:
            self._count += 1
            self._tg.start_soon(self._work)
        # else: a busy worker takes it when it finishes its current request

    async def _work(self) -> None:
        jobs = self._jobs
        while True:
            while jobs:
                await jobs.popleft()()
            if self._closed:
                return
            wake = anyio.Event()
            self._idle.append(wake)
            await wake.wait()

    def close(self) -> None:
        """Workers finish every queued job, then return."""
        self._closed = True
        idle, self._idle = self._idle, []
        for wake in idle:
            wake.set()


def _fallback(
    workers: _Workers,
    device: BlockDevice,
    conn: NbdServerConnection,
    outbox: _Outbox,
    server: NbdServer,
    req: NbdRequest,
) -> None:
    workers.submit(functools.partial(_serve_request, device, conn, req, outbox, server))


class _ReadTicket(Protocol):
    """What a device's ``begin_read`` returns (``Volume.begin_read``'s ``PendingRead``)."""

    def result(self) -> bytes | None: ...

    def add_done_callback(self, callback: Callable[[], None]) -> None: ...


class _Ticket(Protocol):
    """What a device's ``begin_write`` returns (``Volume.begin_write``'s ``PendingWrite``)."""

    done: bool

    def result(self) -> None: ...

    async def wait(self) -> None: ...

    def add_done_callback(self, callback: Callable[[], None]) -> None: ...


def _error_reply(conn: NbdServerConnection, req: NbdRequest, server: NbdServer, exc: Exception) -> bytes:
    server.requests_failed += 1
    if isinstance(exc, BlockstoreError):
        return conn.reply(req.handle, exc.errno or p.EIO, str(exc))
    return conn.reply(req.handle, p.EIO, f"internal error: {type(exc).__name__}")


class _FastPath:
    """A device's synchronous shortcuts (``read_now`` / ``begin_read`` / ``begin_write``), if any.

    :class:`blockstore.Volume` serves a read without yielding when all it needs is in this
    process, and submits a write to its replicas without yielding. Doing both inline in the
    reader loop, and answering all requests of one received batch in one write, removes the
    per-request task switches that dominated the profile. A write still waiting for remote
    replicas, and a read submitted to a storage node (``begin_read``), are answered from the
    volume's completion callbacks (no task per request either; a read the fast path gives up on
    goes to a worker); ``unanswered`` counts those, so the connection does not end before they
    are answered.
    """

    __slots__ = ("_drained", "_fallback", "begin_read", "begin_write", "read_now", "unanswered")

    def __init__(self, device: BlockDevice, fallback: Callable[[NbdRequest], None]) -> None:
        self.read_now: Callable[[int, int], bytes | None] | None = getattr(device, "read_now", None)
        self.begin_read: Callable[[int, int], _ReadTicket | None] | None = getattr(device, "begin_read", None)
        self.begin_write: Callable[..., _Ticket | None] | None = getattr(device, "begin_write", None)
        self.unanswered = 0
        self._drained: anyio.Event | None = None
        self._fallback = fallback  # serves a request on the plain async path (a worker)

    def _answered(self) -> None:
        self.unanswered -= 1
        if not self.unanswered and self._drained is not None:
            self._drained.set()

    def _read_later(
        self,
        ticket: _ReadTicket,
        conn: NbdServerConnection,
        req: NbdRequest,
        outbox: _Outbox,
        server: NbdServer,
    ) -> None:
        self.unanswered += 1

        def answer() -> None:
            try:
                data = ticket.result()
                if data is None:
                    self._fallback(req)  # another replica, or the repairing path
                else:
                    outbox.put_many([conn.read_reply_header(req.handle, req.offset, len(data)), data])
            except Exception as exc:  # never let one request kill the connection or the server
                outbox.put(_error_reply(conn, req, server, exc))
            self._answered()

        ticket.add_done_callback(answer)

    def _answer_later(
        self, ticket: _Ticket, conn: NbdServerConnection, req: NbdRequest, outbox: _Outbox, server: NbdServer
    ) -> None:
        self.unanswered += 1

        def answer() -> None:
            try:
                ticket.result()
                out = conn.reply(req.handle)
            except Exception as exc:  # never let one request kill the connection or the server
                out = _error_reply(conn, req, server, exc)
            outbox.put(out)
            self._answered()

        ticket.add_done_callback(answer)

    async def drain(self) -> None:
        """Until every request left to a callback has been answered."""
        while self.unanswered:
            self._drained = anyio.Event()
            await self._drained.wait()

    def serve(
        self,
        conn: NbdServerConnection,
        req: NbdRequest,
        outbox: _Outbox,
        server: NbdServer,
        replies: list[bytes],
    ) -> int | None:
        """Append the reply's parts to ``replies`` and return their size (0: a callback will put
        the reply); None when the plain async path must serve the request."""
        command = req.command
        try:
            if command == _CMD_READ and self.read_now is not None:
                data = self.read_now(req.offset, req.length)
                if data is not None:  # header and data stay apart: the outbox joins them once
                    header = conn.read_reply_header(req.handle, req.offset, len(data))
                    replies.append(header)
                    replies.append(data)
                    return len(header) + len(data)
                if self.begin_read is not None:
                    pending = self.begin_read(req.offset, req.length)
                    if pending is not None:
                        self._read_later(pending, conn, req, outbox, server)
                        return 0
                return None
            if command == _CMD_WRITE and self.begin_write is not None:
                ticket = self.begin_write(req.offset, req.data, fua=bool(req.flags & _FLAG_FUA))
                if ticket is None:
                    return None
                if not ticket.done:
                    self._answer_later(ticket, conn, req, outbox, server)
                    return 0
                ticket.result()
                out = conn.reply(req.handle)
            else:
                return None
        except Exception as exc:  # never let one request kill the connection or the server
            out = _error_reply(conn, req, server, exc)
        replies.append(out)
        return len(out)


async def _read_requests(
    stream: anyio.abc.ByteStream,
    conn: NbdServerConnection,
    devices: Mapping[str, BlockDevice],
    outbox: _Outbox,
    server: NbdServer,
    tls: ssl.SSLContext | None,
) -> None:
    device: BlockDevice | None = None
    fast: _FastPath | None = None
    replies: list[bytes] = []  # inline replies to the batch being parsed: one outbox put per batch
    batched = 0  # bytes in ``replies``
    async with anyio.create_task_group() as requests:
        workers = _Workers(requests)
        try:
            while True:
                event = conn.next_event()
                if isinstance(event, NbdRequest):
                    assert device is not None
                    assert fast is not None
                    size = fast.serve(conn, event, outbox, server, replies)
                    if size is None:
                        workers.submit(functools.partial(_serve_request, device, conn, event, outbox, server))
                    elif size:  # (0: answered later, from the device's completion callback)
                        batched += size
                        if batched >= _SEND_EARLY:  # large reads: let the writer start sending
                            outbox.put_many(replies)
                            replies.clear()
                            batched = 0
                            await anyio.lowlevel.checkpoint()
                    continue
                # What the core queued itself (handshake replies, errors for invalid requests)
                # goes with this batch: NBD replies may come in any order.
                out = conn.data_to_send()
                if out:
                    replies.append(out)
                if replies:
                    outbox.put_many(replies)
                    replies.clear()
                    batched = 0
                if isinstance(event, NeedData):
                    try:
                        data = await stream.receive(1 << 20)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        data = b""
                    conn.receive_data(data)
                elif isinstance(event, NbdStartTls):
                    assert tls is not None
                    stream = await outbox.start_tls(stream, tls)
                elif isinstance(event, NbdExportChosen):
                    device = devices[event.export.name]
                    fast = _FastPath(
                        device, functools.partial(_fallback, workers, device, conn, outbox, server)
                    )
                    server.connections_served += 1
                elif isinstance(event, NbdDisconnect):
                    break
        finally:
            if replies:
                outbox.put_many(replies)
            if fast is not None and fast.unanswered:
                workers.submit(fast.drain)
            workers.close()  # workers finish what is queued, then the group ends
    # every request has replied: let the writer drain and stop


async def _handle_connection(
    stream: anyio.abc.ByteStream,
    exports: Mapping[str, ExportInfo],
    devices: Mapping[str, BlockDevice],
    server: NbdServer,
    tls: ssl.SSLContext | None,
    tls_required: bool,
) -> None:
    conn = NbdServerConnection(
        exports, tls="off" if tls is None else ("required" if tls_required else "optional")
    )
    outbox = _Outbox()
    async with stream, anyio.create_task_group() as tg:

        async def writer() -> None:
            try:
                await outbox.run(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                tg.cancel_scope.cancel()  # the client is gone: stop serving its requests

        tg.start_soon(writer)
        try:
            await _read_requests(stream, conn, devices, outbox, server, tls)
        finally:
            outbox.close()


@contextlib.asynccontextmanager
async def serve_nbd(
    devices: Mapping[str, BlockDevice],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: ssl.SSLContext | None = None,
    tls_required: bool = True,
) -> AsyncIterator[NbdServer]:
    """Serve ``devices`` (export name -> device) over NBD until the context exits.

    With one export, clients may ask for the empty name and get it. ``tls`` enables
    NBD_OPT_STARTTLS with that server context (e.g. ``meshnet.MeshCredentials.ssl_context(
    server_side=True)``: clients need a certificate of the same network); ``tls_required``
    refuses every export to clients that did not upgrade.
    """
    exports = {
        name: ExportInfo(name=name, size=dev.size, can_multi_conn=dev.flush_is_global)
        for name, dev in devices.items()
    }
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
    server = NbdServer(port=bound, exports=exports)

    async def handler(stream: anyio.abc.ByteStream) -> None:
        with contextlib.suppress(Exception):
            await _handle_connection(stream, exports, devices, server, tls, tls_required)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
