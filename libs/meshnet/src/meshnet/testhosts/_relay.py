"""A TCP relay that adds latency in user space, for kernels without ``tc netem``.

Each direction is a reader and a writer joined by a bounded queue: the reader stamps every chunk
with the time it arrived and the writer forwards it no earlier than ``stamp + delay``. Chunks are
pipelined (a 1 MB transfer pays the delay once, not once per chunk), which is what a long link
does; per-direction order is kept, as TCP would.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable
from types import TracebackType

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from meshnet.testhosts._errors import HostNetworkError
from meshnet.testhosts._netns import socket_in_netns

__all__ = ["DelayRelay"]

_CHUNK = 65536
_QUEUE_CHUNKS = 256  # at most 16 MiB buffered per direction


class DelayRelay:
    """Listen on ``listen_host:listen_port`` and forward each connection to ``target`` after ``delay``.

    ``netns`` is the network namespace the relay's sockets live in (None: the test process's own),
    so a relay in host A's namespace forwarding to host B sees A's partitions like A's own traffic.
    ``delay`` is one-way: a request/response round trip through the relay pays it twice. It can be
    changed while running (``relay.delay = 0.2``).
    """

    def __init__(
        self,
        target: tuple[str, int],
        delay: float,
        *,
        netns: str | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target = target
        self.delay = delay
        self.netns = netns
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.connections = 0
        self.bytes_forwarded = 0
        self._listener: anyio.abc.SocketListener | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def delay(self) -> float:
        return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise HostNetworkError(f"DelayRelay.delay must be finite seconds >= 0, got {value!r}")
        self._delay = float(value)

    @property
    def port(self) -> int:
        if self._listener is None:
            raise HostNetworkError("the relay is not running (use it as 'async with DelayRelay(...)')")
        return int(self._listener.extra(anyio.abc.SocketAttribute.local_port))  # noqa: S610 (anyio, not Django)

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.port)

    async def __aenter__(self) -> DelayRelay:
        sock = await anyio.to_thread.run_sync(self._listen_socket)
        stack = contextlib.AsyncExitStack()
        try:
            self._listener = await anyio.abc.SocketListener.from_socket(sock)
            await stack.enter_async_context(self._listener)
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # runs first on exit: stop serving, then close
            tg.start_soon(self._listener.serve, self._relay_one, tg)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._listener = None

    def _listen_socket(self) -> socket.socket:
        sock = socket_in_netns(self.netns)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.listen_host, self.listen_port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise HostNetworkError(
                f"relay could not listen on {self.listen_host}:{self.listen_port}: {exc}"
            ) from exc
        return sock

    def _connect_socket(self) -> socket.socket:
        sock = socket_in_netns(self.netns)
        try:
            sock.settimeout(10.0)
            sock.connect(self.target)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def _relay_one(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        async with client:
            try:
                sock = await anyio.to_thread.run_sync(self._connect_socket)
            except OSError:
                return  # the client sees the connection close, as with an unreachable target
            upstream = await anyio.abc.SocketStream.from_socket(sock)
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(self._direction, client, upstream, tg.cancel_scope.cancel)
                tg.start_soon(self._direction, upstream, client, tg.cancel_scope.cancel)

    async def _direction(
        self, src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream, abort: Callable[[], None]
    ) -> None:
        send: MemoryObjectSendStream[tuple[float, bytes]]
        receive: MemoryObjectReceiveStream[tuple[float, bytes]]
        send, receive = anyio.create_memory_object_stream[tuple[float, bytes]](_QUEUE_CHUNKS)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_side, src, send, abort)
            await self._write_side(dst, receive, abort)

    async def _read_side(
        self,
        src: anyio.abc.SocketStream,
        queue: MemoryObjectSendStream[tuple[float, bytes]],
        abort: Callable[[], None],
    ) -> None:
        async with queue:
            while True:
                try:
                    chunk = await src.receive(_CHUNK)
                except anyio.EndOfStream:
                    return  # closing the queue tells the writer to pass the EOF on
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    abort()
                    return
                await queue.send((anyio.current_time(), chunk))

    async def _write_side(
        self,
        dst: anyio.abc.SocketStream,
        queue: MemoryObjectReceiveStream[tuple[float, bytes]],
        abort: Callable[[], None],
    ) -> None:
        async with queue:
            async for stamp, chunk in queue:
                await anyio.sleep_until(stamp + self._delay)
                try:
                    await dst.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    abort()
                    return
                self.bytes_forwarded += len(chunk)
        try:
            await dst.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            abort()
