"""Values exchanged with a :class:`~mycelium.globaldb.KVStore`: keys, revisions, txn parts, results.

They mirror etcd's v3 data model (a flat ordered byte keyspace, a global revision counter, one
lease per key) so the embedded SQLite store and the etcd client return identical values.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from ._errors import InvalidRequestError

__all__ = [
    "Key",
    "Value",
    "to_bytes",
    "prefix_end",
    "KeyValue",
    "EventType",
    "Event",
    "CompareTarget",
    "CompareOp",
    "Compare",
    "Get",
    "Put",
    "Delete",
    "Op",
    "RangeResult",
    "PutResult",
    "DeleteResult",
    "OpResult",
    "TxnResult",
    "LeaseGrant",
    "LeaseInfo",
    "StoreStatus",
    "KeyRange",
    "key_range",
]

Key = str | bytes
Value = str | bytes

#: Upper bound on a single key; etcd accepts up to its request size limit but long keys are a bug.
MAX_KEY_BYTES = 8 * 1024


def to_bytes(value: Key, field: str = "key") -> bytes:
    """Encode ``value`` as bytes (str as UTF-8); reject anything else with a message naming ``field``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidRequestError(f"{field} must be str or bytes, not {type(value).__name__}")


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's "prefix + 1" rule)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\x00"  # every key is >= prefix: etcd's "to the end of the keyspace" marker


@attrs.frozen
class KeyRange:
    """``[key, range_end)``; ``range_end`` empty means the single key, ``b"\\0"`` means to the end."""

    key: bytes
    range_end: bytes = b""

    def contains(self, k: bytes) -> bool:
        if not self.range_end:
            return k == self.key
        if self.range_end == b"\x00":
            return k >= self.key
        return self.key <= k < self.range_end


def key_range(key: Key, *, prefix: bool = False, range_end: Key | None = None) -> KeyRange:
    """Validate and build a :class:`KeyRange` from the user-facing arguments."""
    k = to_bytes(key)
    if prefix and range_end is not None:
        raise InvalidRequestError("give either prefix=True or range_end, not both")
    if not k and not prefix and range_end is None:
        raise InvalidRequestError("key must not be empty (use prefix=True with an empty key for all keys)")
    if len(k) > MAX_KEY_BYTES:
        raise InvalidRequestError(f"key is {len(k)} bytes; keys must be at most {MAX_KEY_BYTES} bytes")
    if prefix:
        return KeyRange(k if k else b"\x00", prefix_end(k))
    if range_end is not None:
        return KeyRange(k, to_bytes(range_end, "range_end"))
    return KeyRange(k)


@attrs.frozen
class KeyValue:
    """One key at one revision. ``version`` counts puts since the key was (re)created."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@attrs.frozen
class Event:
    """A change seen by a watch; for DELETE, ``kv.mod_revision`` is the revision of the deletion."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class CompareTarget(enum.Enum):
    VERSION = "version"
    CREATE = "create_revision"
    MOD = "mod_revision"
    VALUE = "value"
    LEASE = "lease"


class CompareOp(enum.Enum):
    EQUAL = "=="
    NOT_EQUAL = "!="
    LESS = "<"
    GREATER = ">"


def _op(op: str | CompareOp) -> CompareOp:
    if isinstance(op, CompareOp):
        return op
    try:
        return CompareOp("==" if op == "=" else op)
    except ValueError:
        raise InvalidRequestError(f"compare operator {op!r} is not one of ==, !=, <, >") from None


@attrs.frozen
class Compare:
    """One txn guard on a single key. A missing key has version/create/mod/lease 0, and every
    comparison on the value of a missing key is false (etcd's rule)."""

    key: bytes
    target: CompareTarget
    op: CompareOp
    operand: int | bytes

    @classmethod
    def value(cls, key: Key, op: str | CompareOp, value: Value) -> Compare:
        return cls(to_bytes(key), CompareTarget.VALUE, _op(op), to_bytes(value, "value"))

    @classmethod
    def version(cls, key: Key, op: str | CompareOp, version: int) -> Compare:
        return cls(to_bytes(key), CompareTarget.VERSION, _op(op), int(version))

    @classmethod
    def create_revision(cls, key: Key, op: str | CompareOp, revision: int) -> Compare:
        return cls(to_bytes(key), CompareTarget.CREATE, _op(op), int(revision))

    @classmethod
    def mod_revision(cls, key: Key, op: str | CompareOp, revision: int) -> Compare:
        return cls(to_bytes(key), CompareTarget.MOD, _op(op), int(revision))

    @classmethod
    def lease(cls, key: Key, op: str | CompareOp, lease_id: int) -> Compare:
        return cls(to_bytes(key), CompareTarget.LEASE, _op(op), int(lease_id))

    def holds_for(self, kv: KeyValue | None) -> bool:
        """Evaluate this guard against the key's current state (``None`` = absent)."""
        if self.target is CompareTarget.VALUE:
            if kv is None:
                return False
            actual: int | bytes = kv.value
        elif kv is None:
            actual = 0
        else:
            actual = {
                CompareTarget.VERSION: kv.version,
                CompareTarget.CREATE: kv.create_revision,
                CompareTarget.MOD: kv.mod_revision,
                CompareTarget.LEASE: kv.lease,
            }[self.target]
        operand = self.operand
        if type(actual) is not type(operand):
            raise InvalidRequestError(
                f"compare on {self.target.value} needs a {type(actual).__name__} operand, "
                f"not {type(operand).__name__}"
            )
        if self.op is CompareOp.EQUAL:
            return actual == operand
        if self.op is CompareOp.NOT_EQUAL:
            return actual != operand
        if self.op is CompareOp.LESS:
            return actual < operand  # type: ignore[operator]
        return actual > operand  # type: ignore[operator]


@attrs.frozen
class Get:
    """A range read inside a txn."""

    range: KeyRange
    limit: int = 0
    keys_only: bool = False
    count_only: bool = False

    @classmethod
    def of(
        cls,
        key: Key,
        *,
        prefix: bool = False,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> Get:
        return cls(key_range(key, prefix=prefix), limit, keys_only, count_only)


@attrs.frozen
class Put:
    """A write inside a txn; ``lease`` 0 detaches the key from any lease."""

    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False

    @classmethod
    def of(cls, key: Key, value: Value, *, lease: int = 0, prev_kv: bool = False) -> Put:
        return cls(key_range(key).key, to_bytes(value, "value"), lease, prev_kv)


@attrs.frozen
class Delete:
    """A range delete inside a txn."""

    range: KeyRange
    prev_kv: bool = False

    @classmethod
    def of(cls, key: Key, *, prefix: bool = False, prev_kv: bool = False) -> Delete:
        return cls(key_range(key, prefix=prefix), prev_kv)


Op = Get | Put | Delete


@attrs.frozen
class RangeResult:
    """``revision`` is the store revision the read was served at (use it to start a watch)."""

    kvs: tuple[KeyValue, ...]
    count: int
    more: bool
    revision: int


@attrs.frozen
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@attrs.frozen
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: tuple[KeyValue, ...] = ()


OpResult = RangeResult | PutResult | DeleteResult


@attrs.frozen
class TxnResult:
    """``responses`` holds one result per op of the branch that ran (success or failure)."""

    succeeded: bool
    revision: int
    responses: tuple[OpResult, ...]


@attrs.frozen
class LeaseGrant:
    id: int
    ttl: int


@attrs.frozen
class LeaseInfo:
    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...] = ()


@attrs.frozen
class StoreStatus:
    """What ``status()`` reports; fields an embedded store does not have are 0 or empty."""

    version: str
    db_size: int
    revision: int
    leader: int
    member_id: int
    raft_term: int
    raft_index: int
    errors: tuple[str, ...] = ()


def check_txn(ops: Sequence[Op], field: str) -> None:
    """Reject what etcd rejects: two puts/deletes of the same single key in one branch."""
    seen: set[bytes] = set()
    for op in ops:
        if isinstance(op, Put):
            k = op.key
        elif isinstance(op, Delete) and not op.range.range_end:
            k = op.range.key
        else:
            continue
        if k in seen:
            raise InvalidRequestError(f"{field}: key {k!r} is written twice in one txn branch")
        seen.add(k)
