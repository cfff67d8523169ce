"""How etcd's gRPC failures look from grpclib, and their mapping onto :mod:`._errors`."""

from __future__ import annotations

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from ._errors import (
    AuthError,
    CompactedError,
    FutureRevisionError,
    GlobalDBError,
    InvalidRequestError,
    LeaseNotFoundError,
    RequestTimeoutError,
    UnavailableError,
)
from ._etcd_config import Endpoint

__all__ = ["CONNECTION_ERRORS", "REQUIRE_LEADER", "map_grpc_error", "never_applied"]

#: What a dead or unreachable member looks like from grpclib.
CONNECTION_ERRORS = (OSError, StreamTerminatedError, ProtocolError, ConnectionError)
#: etcd asks clients to send this so a member cut off from its leader refuses instead of serving stale data.
REQUIRE_LEADER = {"hasleader": "true"}


def map_grpc_error(
    exc: GRPCError, endpoint: Endpoint, *, revision: int = 0, lease_id: int = 0
) -> GlobalDBError:
    """Turn etcd's gRPC status into the typed hierarchy (message kept, endpoint named)."""
    msg = exc.message or exc.status.name
    if "required revision has been compacted" in msg:
        return CompactedError(revision, 0)
    if "required revision is a future revision" in msg:
        return FutureRevisionError(revision, 0)
    if "lease not found" in msg:
        return LeaseNotFoundError(lease_id)
    if exc.status in (Status.PERMISSION_DENIED, Status.UNAUTHENTICATED):
        return AuthError(f"etcd at {endpoint} refused the request: {msg}")
    if exc.status in (Status.INVALID_ARGUMENT, Status.FAILED_PRECONDITION, Status.OUT_OF_RANGE):
        return InvalidRequestError(f"etcd at {endpoint} rejected the request: {msg}")
    if exc.status is Status.DEADLINE_EXCEEDED:
        return RequestTimeoutError(
            f"etcd at {endpoint} timed out: {msg}; a write may or may not have been applied"
        )
    if exc.status is Status.UNAVAILABLE:
        return UnavailableError(f"etcd at {endpoint} is unavailable: {msg}")
    return GlobalDBError(f"etcd at {endpoint} failed: {exc.status.name}: {msg}")


def never_applied(exc: GRPCError) -> bool:
    """Errors that etcd returns before proposing a write, so a retry cannot apply it twice."""
    return exc.status is Status.UNAVAILABLE and "no leader" in (exc.message or "")
