"""anyio driver around :class:`NbdServerConnection`: real NBD clients see a plain disk.

Requests on one connection are served concurrently (clients pipeline up to their queue depth)
and replies go out in completion order, each written whole under a send lock.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import anyio
import anyio.abc
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
        self._parts.append(data)
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
            out = conn.read_reply(req.handle, req.offset, data)
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
    every request the client pipelines in flight at once.
    """

    def __init__(self, tg: anyio.abc.TaskGroup, limit: int = 256) -> None:
        self._tg = tg
        self._limit = limit
        self._count = 0
        self._idle = 0
        self._send, self._receive = anyio.create_memory_object_stream[
            tuple[BlockDevice, NbdServerConnection, NbdRequest, _Outbox, NbdServer]
        ](math.inf)

    def submit(
        self,
        device: BlockDevice,
        conn: NbdServerConnection,
        req: NbdRequest,
        outbox: _Outbox,
        server: NbdServer,
    ) -> None:
        if self._idle == 0 and self._count < self._limit:
            self._count += 1
            self._tg.start_soon(self._work)
        else:
            self._idle -= 1  # one idle worker will take it
        self._send.send_nowait((device, conn, req, outbox, server))

    async def _work(self) -> None:
        async for job in self._receive:
            await _serve_request(*job)
            self._idle += 1

    def close(self) -> None:
        self._send.close()


async def _read_requests(
    stream: anyio.abc.ByteStream,
    conn: NbdServerConnection,
    devices: Mapping[str, BlockDevice],
    outbox: _Outbox,
    server: NbdServer,
    tls: ssl.SSLContext | None,
) -> None:
    device: BlockDevice | None = None
    async with anyio.create_task_group() as requests:
        workers = _Workers(requests)
        try:
            while True:
                event = conn.next_event()
                out = conn.data_to_send()
                if out:
                    outbox.put(out)
                if isinstance(event, NeedData):
                    try:
                        data = await stream.receive(1 << 20)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        data = b""
                    conn.receive_data(data)
                elif isinstance(event, NbdRequest):
                    assert device is not None
                    workers.submit(device, conn, event, outbox, server)
                elif isinstance(event, NbdStartTls):
                    assert tls is not None
                    stream = await outbox.start_tls(stream, tls)
                elif isinstance(event, NbdExportChosen):
                    device = devices[event.export.name]
                    server.connections_served += 1
                elif isinstance(event, NbdDisconnect):
                    break
        finally:
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
