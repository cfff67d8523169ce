"""The drivers' per-peer outgoing frames over a real meshnet connection: written at once while the
connection is idle, otherwise queued for the pump, always in the order given, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from bftconsensus._outgoing import QUEUE_LIMIT, Outgoing
from meshnet import FramedStream, MeshServer, NetworkIdentity, NodeIdentity, connect

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Peer:
    """A server that records every frame it receives."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.arrived = anyio.Event()
        self.want = 0

    async def handle(self, stream: FramedStream) -> None:
        async for frame in stream:
            self.frames.append(frame)
            if len(self.frames) >= self.want:
                self.arrived.set()

    async def wait_for(self, count: int) -> None:
        self.want = count
        if len(self.frames) < count:
            self.arrived = anyio.Event()
            with anyio.fail_after(10):
                await self.arrived.wait()


@pytest.fixture
async def link() -> AsyncIterator[tuple[FramedStream, _Peer]]:
    net = NetworkIdentity.generate("outgoing")
    peer = _Peer()
    async with (
        MeshServer(net.credentials_for(NodeIdentity.generate()), peer.handle) as server,
        await connect(net.credentials_for(NodeIdentity.generate()), "127.0.0.1", server.port) as stream,
    ):
        yield stream, peer


async def test_frames_go_at_once_when_idle_and_through_the_pump_in_order_when_not(
    link: tuple[FramedStream, _Peer],
) -> None:
    stream, peer = link
    out = Outgoing(stream)
    out.send([b"a", b"b"])  # idle: written before send returns
    assert not out._frames
    await peer.wait_for(2)  # with no pump running
    await stream._send_lock.acquire()  # a write under way
    out.send([b"c"])  # waits...
    stream._send_lock.release()
    out.send([b"d"])  # ...and so does what follows it, though the connection is free again
    assert list(out._frames) == [b"c", b"d"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(out.pump)
        await peer.wait_for(4)
        out.close()
    assert peer.frames == [b"a", b"b", b"c", b"d"]


async def test_a_peer_that_never_drains_costs_at_most_the_bound(link: tuple[FramedStream, _Peer]) -> None:
    stream, _ = link
    out = Outgoing(stream)
    await stream._send_lock.acquire()  # nothing can be written
    out.send([b"x"] * (QUEUE_LIMIT + 10))
    assert len(await out.take()) == QUEUE_LIMIT  # the rest was dropped
    stream._send_lock.release()


async def test_closed_it_takes_nothing_more_and_its_pump_returns(link: tuple[FramedStream, _Peer]) -> None:
    stream, _ = link
    out = Outgoing(stream)
    out.close()
    out.send([b"late"])
    with anyio.fail_after(5):
        await out.pump()  # returns at once: closed and nothing waiting
    assert await out.take() == []
