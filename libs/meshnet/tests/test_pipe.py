"""TlsPipe, the data path on asyncio: frames split as plaintext arrives, however it is cut, with
the same end-of-stream and bound rules as the generic stream; reading pauses while the reader
lags; real connections use it and still carry every frame size."""

from __future__ import annotations

import asyncio
import random
import secrets
import ssl
from typing import Any

import anyio
import anyio.streams.stapled
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import meshnet
from meshnet._pipe import _PAUSE, TlsPipe, take_over

pytestmark = pytest.mark.anyio


_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a session object only; no handshake happens


class FakeTransport:
    """Records what the pipe asks of its transport (the splitter never touches the session)."""

    def __init__(self) -> None:
        self.reading = True
        self.closed = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        raise AssertionError("the splitter tests do not write")


def pipe(max_frame_size: int = 1 << 20) -> tuple[TlsPipe, FakeTransport]:
    transport = FakeTransport()
    fake: Any = transport
    return TlsPipe(
        fake,
        _CONTEXT.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO()),
        ssl.MemoryBIO(),
        ssl.MemoryBIO(),
        max_frame_size,
    ), transport


def encoded(*frames: bytes) -> bytes:
    return b"".join(len(f).to_bytes(4, "big") + f for f in frames)


def feed(p: TlsPipe, wire: bytes, cuts: list[int]) -> None:
    last = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        if cut > last:
            p._split(wire[last:cut])
            last = cut


def drain(p: TlsPipe) -> list[bytes]:
    out = []
    while p._frames:
        out.append(p._frames.popleft())
    return out


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.one_of(st.integers(0, 64), st.integers(16_000, 40_000)), max_size=8),
    seed=st.integers(0, 2**32),
    cuts=st.lists(st.integers(min_value=0, max_value=400_000), max_size=30),
)
def test_frames_come_out_whole_however_the_plaintext_is_cut(
    sizes: list[int], seed: int, cuts: list[int]
) -> None:
    rng = random.Random(seed)
    frames = [rng.randbytes(n) for n in sizes]
    p, _ = pipe()
    feed(p, encoded(*frames), cuts)
    assert drain(p) == frames
    assert not p.partial


async def test_a_receive_waits_for_the_rest_and_a_cancelled_one_loses_nothing() -> None:
    p, _ = pipe()
    big = secrets.token_bytes(50_000)
    wire = encoded(big, b"next")
    p._split(wire[:20_000])
    with anyio.move_on_after(0.05):
        await p.receive()
    p._split(wire[20_000:])
    p._wake()
    with anyio.fail_after(5):
        assert await p.receive() == big
        assert await p.receive() == b"next"


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"\x00\x00", "2 of 4 bytes"),
        ((10).to_bytes(4, "big") + b"part", "4 of 10 bytes"),
        ((30_000).to_bytes(4, "big") + b"x" * 20_000, "20000 of 30000 bytes"),
    ],
)
async def test_an_end_inside_a_frame_is_a_decode_error_after_the_whole_frames(
    tail: bytes, message: str
) -> None:
    p, _ = pipe()
    p._split(encoded(b"whole") + tail)
    p._end()
    assert await p.receive() == b"whole"
    with pytest.raises(meshnet.DecodeError, match=message):
        await p.receive()


async def test_an_end_at_a_frame_boundary_is_a_clean_end() -> None:
    p, _ = pipe()
    p._split(encoded(b"only"))
    p.connection_lost(None)
    assert await p.receive() == b"only"
    with pytest.raises(anyio.EndOfStream):
        await p.receive()


async def test_an_oversized_frame_is_refused_after_the_frames_before_it() -> None:
    p, transport = pipe(max_frame_size=100)
    p._split(encoded(b"fine") + (101).to_bytes(4, "big") + b"y" * 101 + encoded(b"never"))
    assert not transport.reading  # nothing more is taken in after a bad header
    p.data_received(b"more")  # and what the socket still delivers is dropped, not buffered
    assert p._incoming.pending == 0
    assert await p.receive() == b"fine"
    with pytest.raises(meshnet.FrameTooLargeError):
        await p.receive()


async def test_reading_pauses_while_the_reader_lags_and_resumes_when_it_catches_up() -> None:
    p, transport = pipe(max_frame_size=1 << 22)
    frame = b"z" * 200_000
    for _ in range(_PAUSE // len(frame) + 1):
        p._split(encoded(frame))
    p._decrypt()  # nothing to decrypt (the session has no records): checks the queue bound
    assert not transport.reading
    while p._frames:
        assert await p.receive() == frame
    assert transport.reading


async def test_a_stream_that_is_not_anyio_tls_over_asyncio_keeps_the_generic_path() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](1)
    async with send, receive:
        assert take_over(anyio.streams.stapled.StapledObjectStream(send, receive), 1 << 20) is None


async def test_real_connections_use_the_pipe_and_carry_every_frame_size(
    net_a: meshnet.NetworkIdentity, member: Any
) -> None:
    sizes = [0, 1, 3, 4, 5, 100, 16_383, 16_384, 16_385, 65_536, 65_537, 200_000, 1_000_000]
    frames = [secrets.token_bytes(n) for n in sizes]
    server_pipes: list[bool] = []

    async def echo(stream: meshnet.FramedStream) -> None:
        server_pipes.append(stream._pipe is not None)
        async for frame in stream:
            await stream.send(frame)

    async with (
        meshnet.MeshServer(member(net_a), echo) as server,
        await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream,
    ):
        assert stream._pipe is not None
        with anyio.fail_after(20):
            await stream.send_many(frames[:5])
            for frame in frames[5:]:
                await stream.send(frame)
            got = [await stream.receive() for _ in frames]
    assert server_pipes == [True]
    assert got == frames


async def test_send_now_writes_at_once_or_leaves_the_frames_to_send_many(
    net_a: meshnet.NetworkIdentity, member: Any
) -> None:
    received: list[bytes] = []
    done = anyio.Event()

    async def collect(stream: meshnet.FramedStream) -> None:
        async for frame in stream:
            received.append(frame)
            if frame == b"last":
                done.set()

    async with (
        meshnet.MeshServer(member(net_a), collect) as server,
        await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream,
    ):
        assert stream.send_now([b"a", b"b"])  # nothing under way: written before it returns
        await stream._send_lock.acquire()  # a send_many in progress holds the lock
        assert not stream.send_now([b"never"])  # so nothing is written around it
        stream._send_lock.release()
        assert stream._pipe is not None
        stream._pipe.pause_writing()  # the socket's buffer is full
        assert not stream.send_now([b"never"])
        stream._pipe.resume_writing()
        with pytest.raises(meshnet.FrameTooLargeError):
            stream.send_now([bytes(stream.max_frame_size + 1)])
        assert stream.send_now([b"c"])
        await stream.send_many([b"last"])
        with anyio.fail_after(10):
            await done.wait()
        await stream.aclose()
        assert not stream.send_now([b"never"])  # closed: send_many reports it
    assert received == [b"a", b"b", b"c", b"last"]


async def test_deliver_hands_frames_in_order_from_the_callback_and_returns_at_a_clean_end(
    net_a: meshnet.NetworkIdentity, member: Any
) -> None:
    got: list[bytes] = []
    tasks: list[object] = []
    done = anyio.Event()

    async def collect(stream: meshnet.FramedStream) -> None:
        assert stream._pipe is not None
        first = await stream.receive()  # a receive first: deliver takes over after it
        got.append(first)

        def handler(frame: bytes) -> None:
            got.append(frame)
            tasks.append(asyncio.current_task())

        await stream.deliver(handler)  # returns when the client closes cleanly
        done.set()

    frames = [secrets.token_bytes(n) for n in (1, 100, 20_000, 0, 70_000, 5)]
    async with meshnet.MeshServer(member(net_a), collect) as server:
        async with await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream:
            await stream.send_many(frames[:3])
            await anyio.sleep(0.05)
            await stream.send_many(frames[3:])
            await anyio.sleep(0.05)
        with anyio.fail_after(10):
            await done.wait()
    assert got == frames
    assert tasks[-3:] == [None] * 3  # what came after deliver began was handed from the callback


async def test_deliver_raises_the_handlers_error_and_a_bad_frame_after_the_good_ones(
    net_a: meshnet.NetworkIdentity, member: Any
) -> None:
    outcomes: list[object] = []
    got: list[bytes] = []
    done = anyio.Event()

    async def serve(stream: meshnet.FramedStream) -> None:
        def handler(frame: bytes) -> None:
            if frame == b"boom":
                raise RuntimeError("handler bug")
            got.append(frame)

        try:
            await stream.deliver(handler)
            outcomes.append("clean end")
        except Exception as exc:  # the test records what deliver raised
            outcomes.append(exc)
        done.set()

    async with meshnet.MeshServer(member(net_a), serve) as server:
        async with await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream:
            await stream.send_many([b"ok", b"boom", b"never"])
            with anyio.fail_after(10):
                await done.wait()
        assert isinstance(outcomes[0], RuntimeError)
        assert got == [b"ok"]  # nothing handed after the handler failed

        done = anyio.Event()
        async with await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream:
            await stream.send(b"fine")
            assert stream._pipe is not None
            stream._pipe._session.write((50 * 1024 * 1024).to_bytes(4, "big"))  # a header over the limit
            stream._pipe._transport.write(stream._pipe._outgoing.read())
            with anyio.fail_after(10):
                await done.wait()
    assert isinstance(outcomes[1], meshnet.DecodeError)
    assert got == [b"ok", b"fine"]
