"""MeshServer: accepts connections, authenticates each one, and hands only verified streams to a handler."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
from anyio.abc import SocketStream, TaskGroup

from meshnet._connect import server_handshake
from meshnet._credentials import MeshCredentials
from meshnet._errors import DecodeError, HandshakeError, MeshnetError, StreamClosedError
from meshnet._handshake import NonceCache
from meshnet._observe import MeshnetMetrics, default_metrics, transport_log
from meshnet._stream import FramedStream

__all__ = ["MeshServer", "StreamHandler"]

StreamHandler = Callable[[FramedStream], Awaitable[None]]


class MeshServer:
    """Listen on ``host:port`` and run ``handler(stream)`` for every authenticated connection.

    A refused handshake, a garbage client or a handler error closes that one connection (with a
    refusal/decode counter and a log line) and never stops the server. At most
    ``max_pending_handshakes`` unauthenticated connections are handshaking at once, so a flood of
    slow clients costs bounded memory; each handshake is bounded by ``credentials.handshake_timeout``.
    The stream is closed when the handler returns.
    """

    def __init__(
        self,
        credentials: MeshCredentials,
        handler: StreamHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics: MeshnetMetrics | None = None,
        max_pending_handshakes: int = 64,
    ) -> None:
        if max_pending_handshakes < 1:
            raise ValueError(f"max_pending_handshakes must be >= 1, got {max_pending_handshakes}")
        self._credentials = credentials
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._metrics = metrics if metrics is not None else default_metrics()
        self._limiter = anyio.CapacityLimiter(max_pending_handshakes)
        self._nonces = NonceCache()
        self._live: set[FramedStream] = set()
        self._task_group: TaskGroup | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._port is None:
            raise MeshnetError("MeshServer.port is only known inside 'async with MeshServer(...)'")
        return self._port

    @property
    def credentials(self) -> MeshCredentials:
        return self._credentials

    def update_credentials(self, credentials: MeshCredentials) -> int:
        """Use new credentials (renewed certificate, new revocation list, changed federation links).

        New connections are checked against them; live connections whose peer certificate the new
        credentials refuse (revoked, federation removed, expired) are closed now. Returns how many.
        """
        if credentials.node_id != self._credentials.node_id:
            raise MeshnetError("update_credentials must keep the same node identity")
        self._credentials = credentials
        dropped = 0
        for stream in list(self._live):
            certificate = stream.peer_certificate
            if certificate is None or stream.closed:
                continue
            try:
                credentials.check_peer(certificate.der)
            except HandshakeError as exc:
                dropped += 1
                self._metrics.peer_dropped(exc.reason)
                transport_log.info("peer_dropped", peer=stream.peer.node_id, reason=exc.reason)
                if self._task_group is not None:
                    self._task_group.start_soon(stream.aclose)
        return dropped

    async def __aenter__(self) -> MeshServer:
        listener = await anyio.create_tcp_listener(local_host=self._host, local_port=self._requested_port)
        self._port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio typed attributes, not Django)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._serve, listener)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        result = await self._task_group.__aexit__(exc_type, exc, tb)
        self._task_group = None
        return result

    async def _serve(self, listener: anyio.abc.Listener[SocketStream]) -> None:
        async with listener:
            await listener.serve(self._connection)

    async def _connection(self, tcp: SocketStream) -> None:
        peer_addr = _address(tcp)
        try:
            async with self._limiter:
                with anyio.fail_after(self._credentials.handshake_timeout):
                    stream = await server_handshake(tcp, self._credentials, self._nonces, self._metrics)
        except TimeoutError:
            await _abort(tcp)
            self._refused("timeout", peer_addr)
            return
        except HandshakeError as exc:
            self._refused(exc.reason, peer_addr)
            return
        self._live.add(stream)
        async with stream:
            try:
                await self._handler(stream)
            except StreamClosedError:
                pass
            except DecodeError as exc:
                transport_log.info("stream_closed_on_bad_input", peer=stream.peer.node_id, error=str(exc))
            except Exception:
                transport_log.exception("handler_failed", peer=stream.peer.node_id)
            finally:
                self._live.discard(stream)

    def _refused(self, reason: str, peer_addr: str) -> None:
        self._metrics.handshake_refused(reason)
        transport_log.info("handshake_refused", side="server", reason=reason, peer=peer_addr)


def _address(tcp: SocketStream) -> str:
    try:
        address = tcp.extra(anyio.abc.SocketAttribute.remote_address)  # noqa: S610 (anyio typed attributes, not Django)
    except anyio.TypedAttributeLookupError:
        return "?"
    if isinstance(address, str):
        return address
    return f"{address[0]}:{address[1]}"


async def _abort(tcp: SocketStream) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0), contextlib.suppress(OSError):
        await tcp.aclose()
