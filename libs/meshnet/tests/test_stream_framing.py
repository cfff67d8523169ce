"""FramedStream's receive buffering, over an in-memory byte stream standing in for the TLS stream
(the transport tests run the same code over real TLS): frames split across and packed into
records come out whole, and a receive cancelled mid-frame loses nothing."""

from __future__ import annotations

import secrets

import anyio
import pytest
from prometheus_client import CollectorRegistry

import meshnet
from meshnet._stream import FramedStream

pytestmark = pytest.mark.anyio


class ChunkFeed(anyio.abc.ByteStream):
    """A byte stream that hands out exactly the chunks it is fed (a fake TLS record stream)."""

    def __init__(self) -> None:
        self.send_in, self.recv_out = anyio.create_memory_object_stream[bytes](100)
        self.sent: list[bytes] = []
        self.eof = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.recv_out.receive()  # EndOfStream once the feeding side is closed

    async def send(self, item: bytes) -> None:
        self.sent.append(item)  # the tests only receive; kept so the fake is a whole ByteStream

    async def send_eof(self) -> None:
        self.eof = True

    async def aclose(self) -> None:
        self.send_in.close()
        self.recv_out.close()


def framed(feed: ChunkFeed) -> FramedStream:
    peer = meshnet.PeerInfo("peer", "net", frozenset({"*"}), b"\x00" * 32)
    return FramedStream(
        feed, peer, max_frame_size=1 << 20, metrics=meshnet.MeshnetMetrics(CollectorRegistry())
    )


def encoded(*frames: bytes) -> bytes:
    return b"".join(len(f).to_bytes(4, "big") + f for f in frames)


@pytest.mark.parametrize("record", [1, 3, 4, 5, 1000, 16384])
async def test_frames_come_out_whole_whatever_the_record_boundaries(record: int) -> None:
    frames = [b"", b"x", secrets.token_bytes(200), secrets.token_bytes(20_000), secrets.token_bytes(140_000)]
    wire = encoded(*frames)
    feed = ChunkFeed()
    stream = framed(feed)

    async def feed_records() -> None:
        for i in range(0, len(wire), record):
            await feed.send_in.send(wire[i : i + record])
        feed.send_in.close()

    got = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed_records)
        with anyio.fail_after(10):
            for _ in frames:
                got.append(await stream.receive())
    assert got == frames


async def test_a_receive_cancelled_inside_a_frame_keeps_what_had_arrived() -> None:
    frame = secrets.token_bytes(50_000)
    wire = encoded(frame, b"next")
    feed = ChunkFeed()
    stream = framed(feed)
    feed.send_in.send_nowait(wire[:20_000])  # header and part of the payload
    with anyio.move_on_after(0.05):
        await stream.receive()  # waits for the rest, then is cancelled
    feed.send_in.send_nowait(wire[20_000:])
    with anyio.fail_after(5):
        assert await stream.receive() == frame
        assert await stream.receive() == b"next"


async def test_a_close_inside_a_frame_is_a_decode_error_and_at_a_boundary_a_clean_close() -> None:
    feed = ChunkFeed()
    stream = framed(feed)
    feed.send_in.send_nowait(encoded(b"whole") + (10).to_bytes(4, "big") + b"part")
    feed.send_in.close()
    assert await stream.receive() == b"whole"
    with pytest.raises(meshnet.DecodeError, match="4 of 10"):
        await stream.receive()
    feed2 = ChunkFeed()
    stream2 = framed(feed2)
    feed2.send_in.send_nowait(encoded(b"only"))
    feed2.send_in.close()
    assert await stream2.receive() == b"only"
    with pytest.raises(meshnet.StreamClosedError):
        await stream2.receive()
