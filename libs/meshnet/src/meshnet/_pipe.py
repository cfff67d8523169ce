"""The data phase of a connection on asyncio, driven by the event loop's callbacks.

The handshake runs over anyio's TLS stream, which is simple and reports every failure as it
happens. For the data that follows, that stack costs a task wake-up, two ``epoll_ctl`` calls and
several Python layers per TLS record received (anyio pauses reading between receives), and more
layers per write: leaving it cut the CPU per remote 4 KiB read of a three-replica blockstore
volume by 14% (all processes) and per PBFT operation by ~3%. Once the handshake is done,
`take_over` moves the connection's asyncio transport to a `TlsPipe`: a protocol that decrypts
what arrives with the same TLS session object, splits frames as the records come in (meshnet's
sans-I/O `FrameDecoder`), wakes the reader once per batch of frames, and encrypts and writes a
batch of frames with one system call.

Only anyio's asyncio backend is taken over, and only when its stream objects have the layout
this module knows (checked, not assumed); anything else keeps the generic stream.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import anyio
import anyio.lowlevel

from meshnet._codec import FrameDecoder
from meshnet._errors import DecodeError

__all__ = ["TlsPipe", "take_over"]

_READ = 256 * 1024
"""Plaintext taken out of the TLS session per read call."""
_PAUSE = 1024 * 1024
_RESUME = 256 * 1024
"""Queued-but-unread bytes above which reading from the socket pauses, and below which it resumes."""
_FAIR = 64
"""Frames handed out without waiting before the reader yields to other tasks once."""


_TRANSPORT_METHODS = ("set_protocol", "write", "pause_reading", "resume_reading", "is_closing", "close")
"""What an asyncio transport offers (uvloop's transports have it without subclassing asyncio's)."""


class TlsPipe(asyncio.Protocol):
    """Frames in and out of one TLS connection, from the event loop's callbacks.

    ``receive()`` returns queued frames without waking anything; ``write(pieces)`` encrypts and
    writes at once, waiting only while the socket's buffer is full (TCP back-pressure). A frame
    announcing more than ``max_frame_size`` bytes stops reading and is reported after the frames
    before it; a connection that ends inside a frame is a `DecodeError`, at a frame boundary
    `anyio.EndOfStream`.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        session: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        max_frame_size: int,
    ) -> None:
        self._transport = transport
        self._session = session
        self._incoming = incoming
        self._outgoing = outgoing
        self._decoder = FrameDecoder(max_frame_size)
        self._frames: deque[bytes] = deque()
        self._queued = 0  # bytes in _frames
        self._error: DecodeError | None = None  # a bad frame header: reported after earlier frames
        self._ended = False  # the peer closed, the connection broke, or TLS failed
        self._reader: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # set while the transport is paused
        self._paused = False
        self._streak = 0
        self._handler: Callable[[bytes], None] | None = None  # set while deliver() runs
        self._handler_error: Exception | None = None

    # ------------------------------------------------------------------ protocol callbacks
    def data_received(self, data: bytes) -> None:
        if self._ended:  # after a bad frame or the session's end nothing more is read
            return
        self._incoming.write(data)
        self._decrypt()

    def eof_received(self) -> bool | None:
        self._end()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # ------------------------------------------------------------------ receiving
    def _decrypt(self) -> None:
        session = self._session
        while not self._ended:
            try:
                chunk = session.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:  # a corrupt record, or the peer's close_notify: the stream ends
                self._end()
                self._transport.close()
                break
            if not chunk:
                self._end()
                break
            self._split(chunk)
        if self._outgoing.pending and not self._transport.is_closing():  # key updates want an answer
            self._transport.write(self._outgoing.read())
        if self._queued >= _PAUSE and not self._paused and not self._ended:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _split(self, plain: bytes) -> None:
        """Queue the frames ``plain`` completes; a bad header ends the stream after them."""
        if self._error is not None:
            return
        before = self._decoder.delivered
        try:
            self._decoder.feed_into(plain, self._frames)
        except DecodeError as exc:
            self._error = exc
            self._end()
        finally:
            self._queued += self._decoder.delivered - before

    def _end(self) -> None:
        if not self._ended and not self._transport.is_closing():
            self._transport.pause_reading()  # keep no more input than the reader will be told about
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._handler is not None:
            self._deliver(self._handler)
            ready = self._ended or self._handler_error is not None
        else:
            ready = bool(self._frames) or self._ended
        reader = self._reader
        if ready and reader is not None and not reader.done():
            reader.set_result(None)

    def _deliver(self, handler: Callable[[bytes], None]) -> None:
        """Hand every queued frame to ``handler``; its exception stops delivery (deliver raises it)."""
        frames = self._frames
        while frames and self._handler_error is None:
            frame = frames.popleft()
            self._queued -= len(frame)
            try:
                handler(frame)
            except Exception as exc:  # the consumer's bug: deliver() raises it in its task
                self._handler_error = exc
        self._resume_if_drained()

    def _resume_if_drained(self) -> None:
        """Read from the socket again once the consumer has taken most of what was queued."""
        if self._paused and self._queued <= _RESUME and not self._ended:
            self._paused = False
            self._transport.resume_reading()

    async def deliver(self, handler: Callable[[bytes], None]) -> None:
        """Call ``handler`` with each frame, from the protocol callback, as records are decrypted.

        Returns at a clean end of the stream; raises what `receive` would at a bad end
        (`DecodeError`, after the frames before it), or the handler's own exception. Frames
        already queued go first. Cancelled, it hands nothing more: later frames queue for
        `receive` again.
        """
        self._handler = handler
        try:
            self._deliver(handler)
            while self._handler_error is None and not (self._ended and not self._frames):
                self._reader = asyncio.get_running_loop().create_future()
                try:
                    await self._reader
                finally:
                    self._reader = None
            if self._handler_error is not None:
                raise self._handler_error
            ending = self._ending()
            if not isinstance(ending, anyio.EndOfStream):
                raise ending
        finally:
            self._handler = None

    async def receive(self) -> bytes:
        """The next frame; `DecodeError` for a bad or cut-off frame, `anyio.EndOfStream` at the end."""
        while not self._frames:
            if self._ended:
                raise self._ending()
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
            self._streak = 0
        frame = self._frames.popleft()
        self._queued -= len(frame)
        self._resume_if_drained()
        self._streak += 1
        if self._streak >= _FAIR:  # a peer that never lets the queue run dry cannot starve the loop
            self._streak = 0
            await anyio.lowlevel.checkpoint()
        return frame

    def _ending(self) -> Exception:
        if self._error is not None:
            return self._error
        progress = self._decoder.progress
        if progress is None:
            return anyio.EndOfStream()
        got, total = progress
        return DecodeError(f"connection closed inside a frame: {got} of {total} bytes received")

    @property
    def partial(self) -> bool:
        """Whether part of a frame has arrived (so an error now is a truncation, not a close)."""
        return self._decoder.progress is not None

    # ------------------------------------------------------------------ sending
    async def write(self, pieces: list[bytes]) -> None:
        """Encrypt ``pieces`` (each becomes TLS records) and write them in one go.

        Returns once the socket took them, or its buffer is below the limit again; raises
        `anyio.BrokenResourceError` if the connection is gone.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._transport.is_closing():
            raise anyio.BrokenResourceError
        self._encrypt_and_write(pieces)
        if self._drained is not None:
            await asyncio.shield(self._drained)
            if self._transport.is_closing():
                raise anyio.BrokenResourceError
        else:
            await anyio.lowlevel.cancel_shielded_checkpoint()

    def write_now(self, pieces: list[bytes]) -> bool:
        """`write` without waiting: False, writing nothing, while the socket's buffer is full or
        the connection is closing (then `write` waits or reports it)."""
        if self._drained is not None or self._transport.is_closing():
            return False
        self._encrypt_and_write(pieces)
        return True

    def _encrypt_and_write(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._session.write(piece)
        self._transport.write(self._outgoing.read())

    def close(self) -> None:
        self._end()
        self._transport.close()


def take_over(tls: Any, max_frame_size: int, initial: bytes = b"") -> TlsPipe | None:
    """Move a handshaken anyio TLS stream's connection to a `TlsPipe`.

    ``initial`` is plaintext already read past the handshake; it comes first, then whatever the
    session or anyio still held. Returns None, leaving the stream untouched, when the stream is
    not anyio's asyncio TLS-over-socket layout.
    """
    socket_stream = getattr(tls, "transport_stream", None)
    transport = cast(asyncio.Transport, getattr(socket_stream, "_transport", None))
    protocol = getattr(socket_stream, "_protocol", None)
    session = getattr(tls, "_ssl_object", None)
    incoming = getattr(tls, "_read_bio", None)
    outgoing = getattr(tls, "_write_bio", None)
    if not (
        all(callable(getattr(transport, m, None)) for m in _TRANSPORT_METHODS)  # uvloop's are not
        and isinstance(session, ssl.SSLObject)
        and isinstance(incoming, ssl.MemoryBIO)
        and isinstance(outgoing, ssl.MemoryBIO)
        and isinstance(getattr(protocol, "read_queue", None), deque)
        and not transport.is_closing()
    ):
        return None
    assert protocol is not None
    pipe = TlsPipe(transport, session, incoming, outgoing, max_frame_size)
    transport.set_protocol(pipe)
    if outgoing.pending:
        transport.write(outgoing.read())
    while protocol.read_queue:  # records anyio received but did not decrypt yet
        incoming.write(protocol.read_queue.popleft())
    if initial:
        pipe._split(initial)
    pipe._decrypt()  # what the session still holds, then those records
    if getattr(protocol, "is_at_eof", False) or getattr(protocol, "exception", None) is not None:
        pipe._end()
    elif not pipe._ended and not pipe._paused:
        transport.resume_reading()  # anyio pauses reading between its receives
    return pipe
