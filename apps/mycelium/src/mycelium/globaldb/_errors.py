"""One exception hierarchy for the Global DB, rooted at :class:`GlobalDBError`.

Both backends (etcd and the embedded SQLite store) raise the same types, so code written against
:class:`~mycelium.globaldb.KVStore` handles failures once. Messages name the key, revision or
endpoint involved and say what the caller can do about it.
"""

from __future__ import annotations

__all__ = [
    "GlobalDBError",
    "InvalidRequestError",
    "UnavailableError",
    "RequestTimeoutError",
    "CompactedError",
    "FutureRevisionError",
    "LeaseNotFoundError",
    "AuthError",
    "ConflictError",
    "NotFoundError",
    "SchemaError",
    "LockLostError",
]


class GlobalDBError(Exception):
    """Root of every error the Global DB raises."""


class InvalidRequestError(GlobalDBError, ValueError):
    """The request is malformed (empty key, negative limit, duplicate key in a txn, ...)."""


class UnavailableError(GlobalDBError):
    """No endpoint could serve the request (all members down, partitioned or refusing)."""


class RequestTimeoutError(GlobalDBError):
    """A request did not finish within its deadline; a write may or may not have been applied."""


class CompactedError(GlobalDBError):
    """The requested revision was compacted away: re-read the current state and watch from there."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        self.requested = requested
        self.compact_revision = compact_revision
        oldest = f"; the oldest revision still available is {compact_revision}" if compact_revision else ""
        super().__init__(
            f"revision {requested} has been compacted{oldest}: read the keys again and watch "
            "from the revision of that read"
        )


class FutureRevisionError(GlobalDBError):
    """A read asked for a revision the store has not reached yet."""

    def __init__(self, requested: int, current: int) -> None:
        self.requested = requested
        self.current = current
        cur = f" (current revision {current})" if current else ""
        super().__init__(f"revision {requested} is in the future{cur}: use 0 for the latest revision")


class LeaseNotFoundError(GlobalDBError):
    """The lease does not exist: it expired, was revoked, or was never granted."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(
            f"lease {lease_id:#x} not found: it expired, was revoked or was never granted; grant a new one"
        )


class AuthError(GlobalDBError):
    """The server refused the client's identity or permissions."""


class ConflictError(GlobalDBError):
    """A compare-and-swap write lost: the key changed since it was read."""

    def __init__(self, key: bytes, expected_revision: int, actual_revision: int) -> None:
        self.key = key
        self.expected_revision = expected_revision
        self.actual_revision = actual_revision
        expected = "absent" if expected_revision == 0 else f"at mod revision {expected_revision}"
        actual = "absent" if actual_revision == 0 else f"at mod revision {actual_revision}"
        super().__init__(
            f"conflicting update of {key.decode('utf-8', 'replace')!r}: expected it {expected}, "
            f"found it {actual}; read it again and retry"
        )


class NotFoundError(GlobalDBError, KeyError):
    """A typed record that the caller required does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "not found"


class SchemaError(GlobalDBError):
    """A stored value could not be decoded into its typed record (corrupt or foreign data)."""


class LockLostError(GlobalDBError):
    """The lease behind a lock or leadership expired, so the holder must stop acting on it."""
