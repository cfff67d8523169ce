"""An async etcd v3 client on grpclib + betterproto, implementing :class:`KVStore`.

Failover: the client talks to one member at a time and moves to the next endpoint when a member
refuses connections, drops the connection or reports it has no leader. Reads (and writes that
provably never left the client) are retried on the next member within ``request_timeout``; a write
whose connection broke after it was sent is NOT retried, because it may have been applied: the
caller gets :class:`UnavailableError` saying so (etcd's own client follows the same rule).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, StreamTerminatedError

from ._errors import (
    InvalidRequestError,
    LeaseNotFoundError,
    RequestTimeoutError,
    UnavailableError,
)
from ._etcd_codec import (
    BoundedCodec,
    delete_request,
    kv_from_pb,
    txn_request,
    txn_result,
)
from ._etcd_config import Endpoint, EtcdConfig, TlsConfig
from ._etcd_errors import CONNECTION_ERRORS, REQUIRE_LEADER, map_grpc_error, never_applied
from ._etcd_watch import EtcdWatch
from ._model import (
    Compare,
    Delete,
    DeleteResult,
    Key,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Op,
    Put,
    PutResult,
    RangeResult,
    StoreStatus,
    TxnResult,
    Value,
    check_txn,
    key_range,
)
from ._pb import etcdserverpb as pb
from ._telemetry import FAILOVERS, log
from ._wire import RawMessage, decode_put, decode_range, encode_put, encode_range

__all__ = ["EtcdClient"]

R = TypeVar("R")


class EtcdClient:
    """etcd v3 over gRPC with endpoint failover, TLS client certificates and typed errors.

    Use as ``async with EtcdClient(EtcdConfig(endpoints=[...])) as db:``; entering checks that at
    least one member answers. Everything not in :class:`KVStore` (members, per-endpoint status)
    is etcd-specific.
    """

    def __init__(self, config: EtcdConfig | None = None, /, **kwargs: Any) -> None:
        if config is None:
            config = EtcdConfig(**kwargs)
        elif kwargs:
            raise InvalidRequestError("give either an EtcdConfig or keyword settings, not both")
        self.config = config
        self._endpoints = config.parsed()
        self._current = 0
        self._channels: dict[Endpoint, Channel] = {}
        self._codec = BoundedCodec(config.max_message_bytes)
        self._ssl = config.tls.context() if config.tls is not None else None

    @classmethod
    def connect(cls, *endpoints: str, tls: TlsConfig | None = None, **settings: Any) -> EtcdClient:
        return cls(EtcdConfig(endpoints=endpoints, tls=tls, **settings))

    async def __aenter__(self) -> EtcdClient:
        try:
            await self.status()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    @property
    def endpoint(self) -> Endpoint:
        """The member the client currently sends requests to."""
        return self._endpoints[self._current]

    # -- connection management ------------------------------------------------------------------
    def channel(self, ep: Endpoint) -> Channel:
        ch = self._channels.get(ep)
        if ch is None:
            tls = self.config.tls
            cfg = Configuration(
                _keepalive_time=self.config.keepalive_time,
                _keepalive_timeout=self.config.keepalive_timeout,
                ssl_target_name_override=tls.server_name if tls is not None else None,
            )
            ch = Channel(
                ep.host, ep.port, ssl=self._ssl if ep.secure else None, codec=self._codec, config=cfg
            )
            self._channels[ep] = ch
        return ch

    def mark_failed(self, ep: Endpoint, reason: str = "connection") -> None:
        """Forget ``ep``'s connection and, if it is the current member, move to the next one."""
        ch = self._channels.pop(ep, None)
        if ch is not None:
            ch.close()
        if self._endpoints[self._current] == ep:
            self._current = (self._current + 1) % len(self._endpoints)
            FAILOVERS.labels(reason=reason).inc()
            log.warning("etcd_failover", endpoint=str(ep), reason=reason, next_endpoint=str(self.endpoint))

    async def _call(
        self,
        path: str,
        request: Any,
        reply_type: type[R],
        *,
        idempotent: bool,
        cardinality: Cardinality = Cardinality.UNARY_UNARY,
        revision: int = 0,
        lease_id: int = 0,
    ) -> R:
        failures: list[str] = []
        deadline = anyio.current_time() + self.config.request_timeout
        attempt = 0
        while True:
            ep = self.endpoint
            sent = False
            try:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise TimeoutError
                with anyio.fail_after(remaining):
                    async with self.channel(ep).request(
                        path, cardinality, type(request), reply_type, metadata=REQUIRE_LEADER
                    ) as stream:
                        with anyio.fail_after(min(remaining, self.config.dial_timeout)):
                            await stream.send_request()
                        sent = True
                        await stream.send_message(request, end=True)
                        reply = await stream.recv_message()
                        if cardinality is Cardinality.STREAM_STREAM and reply is not None:
                            # we half-closed; etcd ends the stream once it has answered
                            while await stream.recv_message() is not None:
                                pass
                if reply is None:
                    raise StreamTerminatedError("etcd closed the stream without a reply")
                return reply
            except GRPCError as exc:
                mapped = map_grpc_error(exc, ep, revision=revision, lease_id=lease_id)
                if not isinstance(mapped, UnavailableError) or not (idempotent or never_applied(exc)):
                    raise mapped from exc
                failures.append(f"{ep}: {exc.message or exc.status.name}")
                self.mark_failed(ep, "unavailable")
            except TimeoutError as exc:
                if not idempotent and sent:
                    raise RequestTimeoutError(
                        f"etcd at {ep} did not answer within {self.config.request_timeout} s; "
                        "the write may or may not have been applied: read the key to find out"
                    ) from exc
                failures.append(f"{ep}: timed out")
                self.mark_failed(ep, "timeout")
                if anyio.current_time() >= deadline:
                    break
            except CONNECTION_ERRORS as exc:
                self.mark_failed(ep)
                if sent and not idempotent:
                    raise UnavailableError(
                        f"connection to etcd at {ep} broke after the write was sent ({exc or type(exc).__name__}); "
                        "it may or may not have been applied: read the key to find out"
                    ) from exc
                failures.append(f"{ep}: {exc or type(exc).__name__}")
            attempt += 1
            if anyio.current_time() >= deadline:
                break
            if attempt % len(self._endpoints) == 0:  # every member failed once: let elections settle
                await anyio.sleep(min(0.2, max(0.0, deadline - anyio.current_time())))
        raise UnavailableError(
            "no etcd member answered within "
            f"{self.config.request_timeout} s (endpoints {', '.join(map(str, self._endpoints))}): "
            + "; ".join(failures[-len(self._endpoints) :])
        )

    # -- KV -------------------------------------------------------------------------------------
    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        result = await self.range(key, revision=revision)
        return result.kvs[0] if result.kvs else None

    async def range(
        self,
        key: Key,
        *,
        prefix: bool = False,
        range_end: Key | None = None,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> RangeResult:
        if limit < 0:
            raise InvalidRequestError(f"limit must be >= 0 (0 = no limit), got {limit}")
        if revision < 0:
            raise InvalidRequestError(f"revision must be >= 0 (0 = latest), got {revision}")
        r = key_range(key, prefix=prefix, range_end=range_end)
        raw = await self._call(
            "/etcdserverpb.KV/Range",
            encode_range(r.key, r.range_end, limit, revision, keys_only, count_only),
            RawMessage,
            idempotent=True,
            revision=revision,
        )
        return decode_range(raw.data)

    async def put(self, key: Key, value: Value, *, lease: int = 0, prev_kv: bool = False) -> PutResult:
        op = Put.of(key, value, lease=lease, prev_kv=prev_kv)
        raw = await self._call(
            "/etcdserverpb.KV/Put",
            encode_put(op.key, op.value, op.lease, op.prev_kv),
            RawMessage,
            idempotent=False,
            lease_id=lease,
        )
        revision, prev = decode_put(raw.data)
        return PutResult(revision, prev if prev_kv else None)

    async def delete(
        self, key: Key, *, prefix: bool = False, range_end: Key | None = None, prev_kv: bool = False
    ) -> DeleteResult:
        op = Delete(key_range(key, prefix=prefix, range_end=range_end), prev_kv)
        resp = await self._call(
            "/etcdserverpb.KV/DeleteRange", delete_request(op), pb.DeleteRangeResponse, idempotent=False
        )
        return DeleteResult(resp.header.revision, resp.deleted, tuple(kv_from_pb(kv) for kv in resp.prev_kvs))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnResult:
        check_txn(success, "success")
        check_txn(failure, "failure")
        lease = next((op.lease for op in (*success, *failure) if isinstance(op, Put) and op.lease), 0)
        read_only = not any(isinstance(op, Put | Delete) for op in (*success, *failure))
        resp = await self._call(
            "/etcdserverpb.KV/Txn",
            txn_request(compare, success, failure),
            pb.TxnResponse,
            idempotent=read_only,
            lease_id=lease,
        )
        return txn_result(resp)

    async def compact(self, revision: int) -> None:
        await self._call(
            "/etcdserverpb.KV/Compact",
            pb.CompactionRequest(revision=revision),
            pb.CompactionResponse,
            idempotent=True,
            revision=revision,
        )

    # -- watch ----------------------------------------------------------------------------------
    @asynccontextmanager
    async def watch(
        self, key: Key, *, prefix: bool = False, start_revision: int = 0, prev_kv: bool = False
    ) -> AsyncIterator[EtcdWatch]:
        if start_revision < 0:
            raise InvalidRequestError(f"start_revision must be >= 0 (0 = from now), got {start_revision}")
        w = EtcdWatch(self, key_range(key, prefix=prefix), start_revision, prev_kv)
        try:
            await w.open()
            yield w
        finally:
            await w.close()

    # -- leases ---------------------------------------------------------------------------------
    async def lease_grant(self, ttl: int, *, lease_id: int = 0) -> LeaseGrant:
        if ttl < 1:
            raise InvalidRequestError(f"lease ttl must be >= 1 second, got {ttl}")
        resp = await self._call(
            "/etcdserverpb.Lease/LeaseGrant",
            pb.LeaseGrantRequest(ttl=ttl, id=lease_id),
            pb.LeaseGrantResponse,
            idempotent=False,
            lease_id=lease_id,
        )
        if resp.error:
            raise InvalidRequestError(f"etcd refused the lease: {resp.error}")
        return LeaseGrant(resp.id, resp.ttl)

    async def lease_revoke(self, lease_id: int) -> None:
        await self._call(
            "/etcdserverpb.Lease/LeaseRevoke",
            pb.LeaseRevokeRequest(id=lease_id),
            pb.LeaseRevokeResponse,
            idempotent=True,
            lease_id=lease_id,
        )

    async def lease_keepalive(self, lease_id: int) -> int:
        resp = await self._call(
            "/etcdserverpb.Lease/LeaseKeepAlive",
            pb.LeaseKeepAliveRequest(id=lease_id),
            pb.LeaseKeepAliveResponse,
            idempotent=True,
            cardinality=Cardinality.STREAM_STREAM,
            lease_id=lease_id,
        )
        if resp.ttl <= 0:
            raise LeaseNotFoundError(lease_id)
        return resp.ttl

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseInfo:
        resp = await self._call(
            "/etcdserverpb.Lease/LeaseTimeToLive",
            pb.LeaseTimeToLiveRequest(id=lease_id, keys=keys),
            pb.LeaseTimeToLiveResponse,
            idempotent=True,
            lease_id=lease_id,
        )
        if resp.ttl < 0:
            raise LeaseNotFoundError(lease_id)
        return LeaseInfo(lease_id, resp.ttl, resp.granted_ttl, tuple(resp.keys))

    # -- maintenance and cluster ----------------------------------------------------------------
    async def status(self) -> StoreStatus:
        resp = await self._call(
            "/etcdserverpb.Maintenance/Status", pb.StatusRequest(), pb.StatusResponse, idempotent=True
        )
        return StoreStatus(
            version=resp.version,
            db_size=resp.db_size,
            revision=resp.header.revision,
            leader=resp.leader,
            member_id=resp.header.member_id,
            raft_term=resp.raft_term,
            raft_index=resp.raft_index,
            errors=tuple(resp.errors),
        )

    async def members(self) -> list[pb.Member]:
        resp = await self._call(
            "/etcdserverpb.Cluster/MemberList", pb.MemberListRequest(), pb.MemberListResponse, idempotent=True
        )
        return list(resp.members)

    async def snapshot(self, path: str | Path) -> int:
        """Stream etcd's backend snapshot into ``path`` (written to ``path.part``, then renamed)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".part")
        ep = self.endpoint
        written = 0
        try:
            async with self.channel(ep).request(
                "/etcdserverpb.Maintenance/Snapshot",
                Cardinality.UNARY_STREAM,
                pb.SnapshotRequest,
                pb.SnapshotResponse,
            ) as stream:
                await stream.send_message(pb.SnapshotRequest(), end=True)
                with open(tmp, "wb") as f:  # noqa: ASYNC230 - sequential chunk writes of a backup
                    while (chunk := await stream.recv_message()) is not None:
                        f.write(chunk.blob)
                        written += len(chunk.blob)
                    f.flush()
                    os.fsync(f.fileno())
        except GRPCError as exc:
            tmp.unlink(missing_ok=True)
            raise map_grpc_error(exc, ep) from exc
        except CONNECTION_ERRORS as exc:
            tmp.unlink(missing_ok=True)
            self.mark_failed(ep)
            raise UnavailableError(f"snapshot from etcd at {ep} failed: {exc or type(exc).__name__}") from exc
        tmp.replace(target)
        return written
