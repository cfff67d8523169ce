"""FramedStream: bounded, length-prefixed messages over an authenticated TLS stream."""

from __future__ import annotations

import collections
import contextlib
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType

import anyio
from anyio.abc import ByteStream

from meshnet._certs import NodeCertificate
from meshnet._codec import FRAME_HEADER_BYTES, FrameDecoder
from meshnet._errors import DecodeError, FrameTooLargeError, StreamClosedError
from meshnet._observe import MeshnetMetrics
from meshnet._peer import PeerInfo
from meshnet._pipe import TlsPipe

__all__ = ["FramedStream"]

_SPLIT_SEND = 64 * 1024
"""Above this, header and payload are sent separately instead of copying the payload once more."""


class _Mutex:
    """A FIFO lock that costs nothing when free.

    anyio's Lock yields to the event loop on every acquire and looks up the current task (on
    asyncio a ``getpid`` system call) even when free; a stream takes its lock once per frame, so
    that was a measurable share of a busy node's CPU. Contended acquires queue on an event and
    the lock is handed straight to the first waiter on release.
    """

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: collections.deque[anyio.Event] = collections.deque()

    async def acquire(self) -> None:
        if not self._held:
            self._held = True
            return
        handed = anyio.Event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():  # the lock was handed to us as we were cancelled: pass it on
                self.release()
            else:
                self._waiters.remove(handed)
            raise

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # still held, now by the first waiter
        else:
            self._held = False


class FramedStream:
    """One authenticated connection carrying whole frames (each at most ``max_frame_size`` bytes).

    `send` waits until the frame is handed to the socket, so a slow receiver slows the sender (TCP
    back-pressure, no unbounded queue). A malformed frame from the peer closes the connection and
    raises `DecodeError`; a clean close at a frame boundary raises `StreamClosedError` (and ends
    ``async for``). Only created by `connect` and `MeshServer` after the handshake succeeded.
    """

    def __init__(
        self,
        transport: ByteStream,
        peer: PeerInfo,
        *,
        max_frame_size: int,
        metrics: MeshnetMetrics,
        initial: bytes = b"",
        certificate: NodeCertificate | None = None,
        pipe: TlsPipe | None = None,
    ) -> None:
        self._transport = transport
        self._pipe = pipe  # the data path on asyncio (see meshnet._pipe); None: through ``transport``
        self._peer = peer
        self._certificate = certificate
        self.max_frame_size = max_frame_size
        self._metrics = metrics
        self._decoder = FrameDecoder(max_frame_size)  # the generic path's; the pipe has its own
        self._ready: collections.deque[bytes] = collections.deque()
        self._bad: DecodeError | None = None
        if initial:
            self._take(initial)
        self._send_lock = _Mutex()
        self._receive_lock = _Mutex()
        self._closed = False
        metrics.peer_opened()

    @property
    def peer(self) -> PeerInfo:
        """The verified peer (from its certificate and the handshake)."""
        return self._peer

    @property
    def peer_certificate(self) -> NodeCertificate | None:
        """The certificate the peer presented (lets a server re-check it when its trust changes)."""
        return self._certificate

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, data: bytes) -> None:
        """Send one frame. Raises `FrameTooLargeError` if ``data`` exceeds ``max_frame_size``."""
        await self.send_many((data,))

    async def send_many(self, frames: Sequence[bytes]) -> None:
        """Send several frames with as few TLS records and system calls as their size allows.

        The receiver sees exactly the frames of as many `send` calls. For a sender with a queue of
        small messages for one peer, this is what keeps per-message cost low under load.
        """
        await self._write(self._pieces(frames))

    def send_now(self, frames: Sequence[bytes]) -> bool:
        """Send ``frames`` without waiting if the stream can take them at once, as `send_many` would.

        It can when no other send is under way, the socket's buffer has room and the connection
        runs on meshnet's asyncio data path. Otherwise it returns False and sends nothing: use
        `send_many` (which also reports a closed connection). Lets a sender that produces frames
        in bursts write each group as it completes instead of all of them at the end of the event
        loop's turn, so the receiver starts on the first while the rest are produced.
        """
        if self._pipe is None or self._send_lock.held or self._closed:
            return False
        pieces = self._pieces(frames)
        try:
            return self._pipe.write_now(pieces)
        except (ssl.SSLError, OSError):  # the session or socket broke: send_many reports it
            return False

    def _pieces(self, frames: Sequence[bytes]) -> list[bytes]:
        """Headers and payloads packed into few buffers; `FrameTooLargeError` for an oversized frame."""
        for data in frames:
            if len(data) > self.max_frame_size:
                raise FrameTooLargeError(
                    f"frame of {len(data)} bytes exceeds max_frame_size {self.max_frame_size}"
                )
        pieces: list[bytes] = []
        batch = bytearray()
        for data in frames:
            if len(data) > _SPLIT_SEND:
                if batch:
                    pieces.append(bytes(batch))
                    batch.clear()
                pieces += [len(data).to_bytes(FRAME_HEADER_BYTES, "big"), data]
            else:
                batch += len(data).to_bytes(FRAME_HEADER_BYTES, "big")
                batch += data
                if len(batch) >= _SPLIT_SEND:
                    pieces.append(bytes(batch))
                    batch.clear()
        if batch:
            pieces.append(bytes(batch))
        return pieces

    async def _write(self, pieces: list[bytes]) -> None:
        await self._send_lock.acquire()
        try:
            if self._pipe is not None:
                await self._pipe.write(pieces)
            else:
                for piece in pieces:
                    await self._transport.send(piece)
        except (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,  # TLS reads the peer's close while writing
            ssl.SSLError,
            OSError,
        ) as exc:
            raise StreamClosedError(
                f"connection to {self._peer.node_id} is closed ({type(exc).__name__})"
            ) from None
        finally:
            self._send_lock.release()

    async def receive(self) -> bytes:
        """The next frame's payload.

        Nothing is consumed until the whole frame has arrived, so a receive that is cancelled
        (a timeout around it, say) loses nothing: the next receive returns the same frame.
        """
        await self._receive_lock.acquire()
        try:
            try:
                if self._pipe is not None:
                    return await self._pipe_frame()
                return await self._receive_frame()
            except DecodeError as exc:
                await self._refuse(exc)
                raise
        finally:
            self._receive_lock.release()

    async def deliver(self, handler: Callable[[bytes], None]) -> None:
        """Call ``handler`` with each frame's payload as it arrives, until the stream ends.

        What ``async for frame in stream: handler(frame)`` does, without a task switch per batch
        of frames on meshnet's asyncio data path: the handler runs in the event loop's callback
        as the TLS records are decrypted, so it must not block (hand long work to a task).
        Returns when the peer closes the stream cleanly; raises `DecodeError` for a malformed or
        cut-off frame (after the frames before it, the connection closed, as `receive` does) and
        the handler's own exception if it raises one.
        """
        await self._receive_lock.acquire()
        try:
            try:
                if self._pipe is not None:
                    await self._pipe.deliver(handler)
                    return
                while True:
                    try:
                        frame = await self._receive_frame()
                    except StreamClosedError:
                        return
                    handler(frame)
            except DecodeError as exc:
                await self._refuse(exc)
                raise
        finally:
            self._receive_lock.release()

    async def _refuse(self, exc: DecodeError) -> None:
        """A malformed or cut-off frame: count it and close the connection (the caller re-raises)."""
        self._metrics.decode_error("frame_too_large" if isinstance(exc, FrameTooLargeError) else "truncated")
        await self.aclose()

    async def _pipe_frame(self) -> bytes:
        assert self._pipe is not None
        try:
            return await self._pipe.receive()
        except anyio.EndOfStream:
            raise StreamClosedError(f"connection to {self._peer.node_id} closed (EndOfStream)") from None

    async def _receive_frame(self) -> bytes:
        ready = self._ready
        while not ready:
            if self._bad is not None:
                raise self._bad
            self._take(await self._next_chunk())
        return ready.popleft()

    def _take(self, chunk: bytes) -> None:
        """Split ``chunk``; a bad header is raised once the frames before it were received."""
        try:
            self._decoder.feed_into(chunk, self._ready)
        except DecodeError as exc:
            self._bad = exc

    async def _next_chunk(self) -> bytes:
        """The transport's next chunk (the end of the stream inside a frame is a `DecodeError`)."""
        try:
            return await self._transport.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            progress = self._decoder.progress
            if progress is None:
                raise StreamClosedError(
                    f"connection to {self._peer.node_id} closed ({type(exc).__name__})"
                ) from None
            got, total = progress
            raise DecodeError(f"connection closed inside a frame: {got} of {total} bytes received") from None
        except anyio.ClosedResourceError:
            raise StreamClosedError("stream was closed locally") from None

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._metrics.peer_closed()
        if self._pipe is not None:
            self._pipe.close()
            return
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(1.0),
            contextlib.suppress(anyio.BrokenResourceError, ssl.SSLError, OSError),
        ):
            await self._transport.aclose()

    async def __aenter__(self) -> FramedStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> FramedStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except StreamClosedError:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        return f"FramedStream(peer={self._peer.node_id!r}, network={self._peer.network_id!r})"
