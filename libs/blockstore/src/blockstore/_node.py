"""Storage node: serves volume replicas (sparse files under one directory) to front ends.

Each connection opens one volume and is served strictly in order, so writes to a chunk land in
the order the front end submitted them. Transport: meshnet's mutually
authenticated TLS 1.3 frames when credentials are given, plain TCP otherwise (one host only).
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import attrs

from meshnet import FramedStream, MeshCredentials, MeshServer

from ._channel import BodyStream, ByteChannel, TcpChannel
from ._chunkstore import ChunkStore
from ._errors import BlockstoreError, WireError
from ._records import RECORD_SIZE
from ._wire import Op, decode_reads, decode_request, decode_writes, encode_response

__all__ = ["StorageNode", "serve_storage_node", "serve_channel"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@attrs.define
class StorageNode:
    """A running storage node; ``port`` is the bound TCP port."""

    root: Path
    port: int
    stores: dict[str, ChunkStore] = attrs.Factory(dict)
    bad_frames: int = 0

    def open_store(self, name: str, size: int, block_size: int, chunk_size: int) -> ChunkStore:
        if not _NAME.fullmatch(name):
            raise WireError(f"volume name {name!r}: must match {_NAME.pattern}")
        if block_size < 512 or block_size & (block_size - 1) or chunk_size % block_size or size % block_size:
            raise WireError(f"geometry size={size} block={block_size} chunk={chunk_size} is not valid")
        store = self.stores.get(name)
        if store is None:
            # Generations are stored at FLUSH (before the fdatasync) and close, not per write:
            # after a crash they can only lag, which makes this replica rebuild, never lose data.
            store = ChunkStore(self.root / name, size, block_size, chunk_size, defer_generations=True)
            self.stores[name] = store
        elif (store.size, store.block_size, store.chunk_size) != (size, block_size, chunk_size):
            raise WireError(f"volume {name} exists with a different geometry")
        return store


def _split(store: ChunkStore, payload: bytes | memoryview, count: int) -> tuple[memoryview, memoryview]:
    data_len = count * store.block_size
    if len(payload) != data_len + count * RECORD_SIZE:
        raise WireError(f"payload of {len(payload)} bytes does not hold {count} blocks and records")
    view = memoryview(payload)
    return view[:data_len], view[data_len:]


async def _execute(
    node: StorageNode,
    store: ChunkStore | None,
    op: Op,
    fields: tuple[int, ...],
    payload: bytes | memoryview,
) -> tuple[ChunkStore | None, list[bytes]]:
    if op is Op.OPEN:
        size, block_size, chunk_size = fields
        name = bytes(payload).decode("utf-8", "replace")
        return node.open_store(name, size, block_size, chunk_size), []
    if op is Op.PING:
        return store, []
    if store is None:
        raise WireError(f"{op.name} before OPEN")
    hot = _execute_now(store, op, fields, payload)
    if hot is not None:
        return store, hot
    if op is Op.WRITE:
        first, chunk, generation, count = fields
        data, records = _split(store, payload, count)
        store.write(first, data, records, chunk, generation)
        return store, []
    if op is Op.ZERO:
        first, chunk, generation, count = fields
        store.zero(first, count, chunk, generation)
        return store, []
    if op is Op.FLUSH:
        store.persist_generations()  # in the loop: writes applied meanwhile cannot race it
        await anyio.to_thread.run_sync(store.flush)
        return store, []
    if op is Op.STATES:
        return store, [b"".join(struct.pack("<Q", g) + d for g, d in store.chunk_states())]
    if op is Op.READ_CHUNK:
        generation, image_data, image_records = store.read_chunk(fields[0])
        return store, [struct.pack("<Q", generation), image_data, image_records]
    chunk, generation = fields  # Op.WRITE_CHUNK
    first = chunk * store.blocks_per_chunk
    count = min(store.blocks_per_chunk, store.blocks - first) if 0 <= first < store.blocks else 0
    data, records = _split(store, payload, count)
    store.write_chunk(chunk, (generation, bytes(data), bytes(records)))
    return store, []


def _execute_now(
    store: ChunkStore | None, op: Op, fields: tuple[int, ...], payload: bytes | memoryview
) -> list[bytes] | None:
    """The hot operations, answered without a coroutine; None: :func:`_execute` handles it."""
    if store is None:
        return None
    if op is Op.WRITES:
        store.write_many(decode_writes(fields[0], payload, store.block_size, RECORD_SIZE))
        return []
    if op is Op.READ:
        first, count = fields
        data, records = store.read(first, count)
        return [data, records]
    if op is Op.READS:
        parts: list[bytes] = []
        for first, count in decode_reads(fields[0], payload, store.block_size):
            parts.extend(store.read(first, count))
        return parts
    return None


async def _answer(
    node: StorageNode, store: ChunkStore | None, body: bytes | memoryview
) -> tuple[ChunkStore | None, list[bytes]]:
    """The reply to one request, as parts (the sender joins a whole batch of replies once)."""
    request = decode_request(body)  # WireError propagates: the connection is closed
    try:
        payload = _execute_now(store, request.op, request.fields, request.payload)
        if payload is None:
            store, payload = await _execute(node, store, request.op, request.fields, request.payload)
        return store, [encode_response(request.request_id, True), *payload]
    except (BlockstoreError, OSError, ValueError) as exc:
        return store, [encode_response(request.request_id, False, str(exc).encode()[:1024])]


async def serve_channel(node: StorageNode, channel: ByteChannel) -> None:
    """Serve one front-end connection, strictly in order, until it closes or misbehaves.

    Every request already received is answered before the replies go out in one write.
    """
    bodies = BodyStream(channel)
    store: ChunkStore | None = None
    try:
        while True:
            store, reply = await _answer(node, store, await bodies.receive())
            replies = [reply]
            while (more := bodies.receive_nowait()) is not None:
                store, reply = await _answer(node, store, more)
                replies.append(reply)
            await bodies.send_gathered(replies)
    except WireError:
        node.bad_frames += 1
    except BlockstoreError:
        pass  # the peer went away
    finally:
        await bodies.aclose()


@contextlib.asynccontextmanager
async def serve_storage_node(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    credentials: MeshCredentials | None = None,
) -> AsyncIterator[StorageNode]:
    """Serve the replicas under ``root`` until the context exits.

    With ``credentials`` the node accepts only meshnet-authenticated peers of its network;
    without, it speaks plain TCP (single-host tests and benchmarks only).
    """
    await anyio.Path(root).mkdir(parents=True, exist_ok=True)
    if credentials is not None:

        async def mesh_handler(stream: FramedStream) -> None:
            await serve_channel(node, stream)

        async with MeshServer(credentials, mesh_handler, host=host, port=port) as server:
            node = StorageNode(root=root, port=server.port)
            try:
                yield node
            finally:
                for store in node.stores.values():
                    store.close()
        return
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
    node = StorageNode(root=root, port=bound)

    async def handler(stream: anyio.abc.ByteStream) -> None:
        await serve_channel(node, TcpChannel(stream))

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield node
        finally:
            tg.cancel_scope.cancel()
            for store in node.stores.values():
                store.close()
