"""The HTTP endpoint Prometheus scrapes: ``GET /metrics`` in the text exposition format.

A deliberately small HTTP/1.x server on anyio, owned by an ``async with`` block so it can live in
a node's task group. It answers one request per connection (``Connection: close``), as
Prometheus' scraper is happy with, which keeps the server free of keep-alive state. Every read
is bounded: the request head may be at most `MAX_REQUEST_HEAD` bytes and must arrive within
``read_timeout`` seconds; concurrent connections beyond ``max_connections`` get a 503 at once.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
from types import TracebackType

import anyio
import anyio.abc
import attrs
from anyio.abc import SocketAttribute
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from obs._errors import ObsError

__all__ = ["MAX_REQUEST_HEAD", "PROMETHEUS_CONTENT_TYPE", "MetricsServer", "RequestDecision", "route_request"]

# The classic text format (0.0.4) every Prometheus version scrapes.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A scrape request is ~200 bytes; 8 KiB is generous and matches common server header limits.
MAX_REQUEST_HEAD = 8192
# After answering, how long and how much unread input we swallow before closing (see _linger).
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_log = logging.getLogger("obs.exposition")


class MetricsServer:
    """Serve ``registry`` over HTTP while the ``async with`` block runs.

    ``port=0`` picks a free port; read it back from `port` (or `url`) inside the block.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/metrics",
        read_timeout: float = 5.0,
        max_connections: int = 64,
    ) -> None:
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise ObsError("registry", f"expected a prometheus_client CollectorRegistry, got {registry!r}")
        if not isinstance(host, str) or not host:
            raise ObsError("host", f"expected an address to bind such as '127.0.0.1', got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ObsError("port", f"expected an integer 0..65535 (0 = any free port), got {port!r}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ObsError("path", f"expected an absolute path such as '/metrics', got {path!r}")
        if (
            isinstance(read_timeout, bool)
            or not isinstance(read_timeout, int | float)
            or not read_timeout > 0
        ):
            raise ObsError("read_timeout", f"expected a positive number of seconds, got {read_timeout!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ObsError("max_connections", f"expected a positive integer, got {max_connections!r}")
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self.host = host
        self.path = path
        self._requested_port = port
        self._read_timeout = float(read_timeout)
        self._limiter = anyio.CapacityLimiter(max_connections)
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ObsError("port", "the server is not running; use it inside 'async with MetricsServer(...)'")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    async def __aenter__(self) -> MetricsServer:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self._requested_port)
        self._listener = listener
        self._port = int(listener.extra(SocketAttribute.local_port))  # noqa: S610 (anyio, not Django)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(listener.serve, self._handle)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        assert self._listener is not None
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            await self._listener.aclose()
            self._port = None

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                self._limiter.acquire_on_behalf_of_nowait(stream)
            except anyio.WouldBlock:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await _send(stream, 503, b"too many concurrent scrapes\n")
                    await _linger(stream)
                return
            try:
                await self._serve_one(stream)
                await _linger(stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the client went away; nothing to answer
            except Exception:  # a bug in a collector must not take the endpoint down
                _log.exception("metrics request failed")
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await _send(stream, 500, b"internal error\n")
            finally:
                self._limiter.release_on_behalf_of(stream)

    async def _serve_one(self, stream: anyio.abc.SocketStream) -> None:
        head: bytes | None = None
        with anyio.move_on_after(self._read_timeout):
            head = await _read_head(stream)
        if head is None:
            await _send(stream, 408, b"request head not received in time\n")
            return
        decision = route_request(head, self.path)
        head_only = decision.method == "HEAD"
        if decision.status != 200:
            extra = [("Allow", "GET, HEAD")] if decision.status == 405 else []
            await _send(stream, decision.status, decision.message.encode(), extra=extra, head_only=head_only)
            return
        body = generate_latest(self.registry)
        extra = [("Content-Type", PROMETHEUS_CONTENT_TYPE)]
        if decision.gzip:
            body = gzip.compress(body, compresslevel=5)
            extra.append(("Content-Encoding", "gzip"))
        await _send(stream, 200, body, extra=extra, head_only=head_only)


@attrs.frozen
class RequestDecision:
    """What to answer to one request head: a status, and for 200 whether to gzip."""

    status: int
    method: str = ""
    gzip: bool = False
    message: str = ""


def route_request(head: bytes, path: str) -> RequestDecision:
    """Decide the answer to a request head (bytes before the blank line). Pure; never raises.

    This is the only parser of network input in the server, so it is kept apart and fuzzed.
    """
    if len(head) > MAX_REQUEST_HEAD:
        return RequestDecision(431, message="request head too large\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return RequestDecision(400, message="expected 'GET /metrics HTTP/1.1'\n")
    method, target, _version = parts
    if method not in ("GET", "HEAD"):
        return RequestDecision(405, method, message="only GET and HEAD\n")
    if target.split("?", 1)[0] != path:
        return RequestDecision(404, method, message=f"not found; metrics are at {path}\n")
    return RequestDecision(200, method, gzip=_accepts_gzip(lines[1:]))


async def _read_head(stream: anyio.abc.SocketStream) -> bytes:
    """Bytes up to the blank line ending the head; past the limit, returns what exceeded it."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_REQUEST_HEAD:
            return bytes(buffer)
        buffer += await stream.receive(4096)
    return bytes(buffer[: buffer.index(b"\r\n\r\n")])


async def _linger(stream: anyio.abc.SocketStream) -> None:
    """Half-close, then discard what the client still sends (bounded) until it closes.

    Closing a socket with unread input makes the kernel send a reset, which can destroy the
    response in flight (the client sees ECONNRESET instead of our 431 or 503).
    """
    with contextlib.suppress(
        anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
    ):
        await stream.send_eof()
        drained = 0
        with anyio.move_on_after(LINGER_SECONDS):
            while drained < LINGER_BYTES:
                drained += len(await stream.receive(65536))


def _accepts_gzip(header_lines: list[str]) -> bool:
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept-encoding" and "gzip" in value.lower():
            return True
    return False


async def _send(
    stream: anyio.abc.SocketStream,
    status: int,
    body: bytes,
    *,
    extra: list[tuple[str, str]] | None = None,
    head_only: bool = False,
) -> None:
    headers = [("Content-Length", str(len(body))), ("Connection", "close"), *(extra or [])]
    if not any(name == "Content-Type" for name, _ in headers):
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    head = f"HTTP/1.1 {status} {_REASONS[status]}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    await stream.send(head.encode("latin-1") + (b"" if head_only else body))
