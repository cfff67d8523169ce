"""The Global DB: an async etcd v3 client and an embedded SQLite store behind one interface.

``KVStore`` is the protocol both backends implement (:class:`EtcdClient` for a real network,
:class:`SQLiteStore` for a single node); recipes (sessions, locks, elections) and the typed schema
of a Mycelium network are written against it. See ``docs/globaldb.md``.
"""

from ._errors import (
    AuthError,
    CompactedError,
    ConflictError,
    FutureRevisionError,
    GlobalDBError,
    InvalidRequestError,
    LeaseNotFoundError,
    LockLostError,
    NotFoundError,
    RequestTimeoutError,
    SchemaError,
    UnavailableError,
)
from ._etcd import EtcdClient
from ._etcd_config import EtcdConfig, TlsConfig
from ._etcd_watch import EtcdWatch
from ._model import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    EventType,
    Get,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Put,
    PutResult,
    RangeResult,
    StoreStatus,
    TxnResult,
    prefix_end,
)
from ._recipes import DistributedLock, Election
from ._records import (
    AclEntry,
    HealthScore,
    NetworkConfig,
    SclerotiumRecord,
    SeedSporeEntry,
    ServiceDefinition,
    TrustScore,
    decode_record,
    encode_record,
)
from ._schema import Collection, NetworkDB, Singleton, Versioned
from ._session import Session
from ._sqlite import SQLiteStore
from ._store import KVStore, Watch

__all__ = [
    # interface
    "KVStore",
    "Watch",
    # backends
    "EtcdClient",
    "EtcdConfig",
    "TlsConfig",
    "EtcdWatch",
    "SQLiteStore",
    # recipes
    "Session",
    "DistributedLock",
    "Election",
    # typed schema
    "NetworkDB",
    "Collection",
    "Singleton",
    "Versioned",
    "NetworkConfig",
    "SclerotiumRecord",
    "TrustScore",
    "HealthScore",
    "ServiceDefinition",
    "AclEntry",
    "SeedSporeEntry",
    "encode_record",
    "decode_record",
    # values
    "KeyValue",
    "Event",
    "EventType",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Get",
    "Put",
    "Delete",
    "RangeResult",
    "PutResult",
    "DeleteResult",
    "TxnResult",
    "LeaseGrant",
    "LeaseInfo",
    "StoreStatus",
    "prefix_end",
    # errors
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


def _backends_implement_kvstore(sqlite: SQLiteStore, etcd: EtcdClient) -> tuple[KVStore, KVStore]:
    """Never called: makes mypy prove that both backends satisfy the KVStore protocol."""
    return sqlite, etcd
