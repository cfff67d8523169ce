"""A resumable etcd watch: one gRPC Watch stream that survives the loss of the member behind it.

The watch remembers ``next_revision`` (the first revision it has not yet delivered). When the
stream breaks (member killed, connection reset, member lost its leader) it reopens on the next
endpoint with ``start_revision = next_revision`` and drops any event below it, so the consumer
sees every event exactly once and in order. If the history it needs was compacted meanwhile, it
raises :class:`CompactedError` instead of silently skipping events.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
from grpclib.client import Stream
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from ._errors import CompactedError, GlobalDBError, UnavailableError
from ._etcd_codec import event_from_pb
from ._etcd_config import Endpoint
from ._etcd_errors import CONNECTION_ERRORS, REQUIRE_LEADER, map_grpc_error
from ._model import Event, KeyRange
from ._pb import etcdserverpb as pb
from ._telemetry import WATCH_RESUMES, log

if TYPE_CHECKING:
    from ._etcd import EtcdClient

__all__ = ["EtcdWatch"]

_PATH = "/etcdserverpb.Watch/Watch"


class _ReconnectError(Exception):
    """Internal: the current stream is unusable; reopen on another member."""


class EtcdWatch:
    """Iterate for :class:`Event` s; see the module docstring for the resume guarantee."""

    def __init__(self, client: EtcdClient, r: KeyRange, start_revision: int, prev_kv: bool) -> None:
        self._client = client
        self._range = r
        self._next = start_revision  # 0 until the first stream tells us the current revision
        self._prev_kv = prev_kv
        self._buffer: list[Event] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._stream: Stream[pb.WatchRequest, pb.WatchResponse] | None = None
        self._endpoint: Endpoint | None = None
        self.reconnects = 0

    @property
    def next_revision(self) -> int:
        return self._next

    @property
    def endpoint(self) -> Endpoint | None:
        """The member currently streaming events to this watch."""
        return self._endpoint

    def __aiter__(self) -> EtcdWatch:
        return self

    async def open(self) -> None:
        """Open the stream on the first member that accepts it, retrying for ``watch_retry_timeout``."""
        errors: list[str] = []
        with anyio.move_on_after(self._client.config.watch_retry_timeout):
            while True:
                ep = self._client.endpoint
                try:
                    await self._open_on(ep)
                    return
                except CompactedError:
                    raise
                except GRPCError as exc:
                    mapped = map_grpc_error(exc, ep, revision=self._next)
                    if not isinstance(mapped, UnavailableError):
                        raise mapped from exc
                    errors.append(str(mapped))
                except (*CONNECTION_ERRORS, TimeoutError, _ReconnectError) as exc:
                    errors.append(f"{ep}: {exc or type(exc).__name__}")
                await self._close_stream()
                self._client.mark_failed(ep)
                if len(errors) % len(self._client.config.endpoints) == 0:
                    await anyio.sleep(0.2)
        raise UnavailableError(
            f"watch could not reach any etcd member within {self._client.config.watch_retry_timeout} s "
            f"(resuming at revision {self._next}): " + "; ".join(errors[-3:])
        )

    async def _open_on(self, ep: Endpoint) -> None:
        stack = contextlib.AsyncExitStack()
        self._stack = stack
        stream = await stack.enter_async_context(
            self._client.channel(ep).request(
                _PATH, Cardinality.STREAM_STREAM, pb.WatchRequest, pb.WatchResponse, metadata=REQUIRE_LEADER
            )
        )
        self._stream = stream
        with anyio.fail_after(self._client.config.dial_timeout + self._client.config.request_timeout):
            await stream.send_request()
            create = pb.WatchCreateRequest(
                key=self._range.key,
                range_end=self._range.range_end,
                start_revision=self._next,
                progress_notify=True,
                prev_kv=self._prev_kv,
            )
            await stream.send_message(pb.WatchRequest(create_request=create))
            while True:
                resp = await stream.recv_message()
                if resp is None:
                    raise _ReconnectError("etcd closed the watch stream before confirming it")
                if resp.created:
                    break
        if resp.canceled:
            self._raise_canceled(resp)
        if self._next == 0:
            self._next = resp.header.revision + 1
        self._endpoint = ep

    def _raise_canceled(self, resp: pb.WatchResponse) -> None:
        if resp.compact_revision:
            raise CompactedError(self._next, resp.compact_revision)
        reason = resp.cancel_reason or "no reason given"
        if "no leader" in reason:
            raise _ReconnectError(reason)
        raise GlobalDBError(f"etcd cancelled the watch at revision {self._next}: {reason}")

    async def _close_stream(self) -> None:
        stack, self._stack, self._stream, self._endpoint = self._stack, None, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def close(self) -> None:
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.cancel()
        await self._close_stream()

    async def __anext__(self) -> Event:
        while not self._buffer:
            stream = self._stream
            try:
                if stream is None:
                    raise _ReconnectError("no stream")
                resp = await stream.recv_message()
                if resp is None:
                    raise _ReconnectError("etcd ended the watch stream")
                if resp.canceled:
                    self._raise_canceled(resp)
            except (GRPCError, *CONNECTION_ERRORS, _ReconnectError) as exc:
                if isinstance(exc, GRPCError):
                    mapped = map_grpc_error(exc, self._endpoint or self._client.endpoint, revision=self._next)
                    if not isinstance(mapped, UnavailableError):
                        raise mapped from exc
                await self._reconnect()
                continue
            events = [event_from_pb(e) for e in resp.events]
            fresh = [e for e in events if e.revision >= self._next]  # drop replays after a resume
            if fresh:
                self._buffer = fresh
            elif not resp.events and resp.header.revision >= self._next:
                self._next = resp.header.revision + 1  # progress notification: nothing below it is pending
        event = self._buffer.pop(0)
        self._next = self._buffer[0].revision if self._buffer else event.revision + 1
        return event

    async def _reconnect(self) -> None:
        failed = self._endpoint
        await self._close_stream()
        if failed is not None:
            self._client.mark_failed(failed)
        self.reconnects += 1
        WATCH_RESUMES.inc()
        log.info("watch_resume", next_revision=self._next, failed_endpoint=str(failed))
        await self.open()
