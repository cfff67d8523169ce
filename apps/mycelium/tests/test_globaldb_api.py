"""The public surface of mycelium.globaldb is pinned: changing it is a deliberate, reviewed act."""

from __future__ import annotations

import mycelium.globaldb as globaldb
from mycelium.globaldb import EtcdClient, KVStore, SQLiteStore

PINNED = [
    "KVStore", "Watch",
    "EtcdClient", "EtcdConfig", "TlsConfig", "EtcdWatch", "SQLiteStore",
    "Session", "DistributedLock", "Election",
    "NetworkDB", "Collection", "Singleton", "Versioned", "NetworkConfig", "SclerotiumRecord", "TrustScore",
    "HealthScore", "ServiceDefinition", "AclEntry", "SeedSporeEntry", "encode_record", "decode_record",
    "KeyValue", "Event", "EventType", "Compare", "CompareOp", "CompareTarget", "Get", "Put", "Delete",
    "RangeResult", "PutResult", "DeleteResult", "TxnResult", "LeaseGrant", "LeaseInfo", "StoreStatus", "prefix_end",
    "GlobalDBError", "InvalidRequestError", "UnavailableError", "RequestTimeoutError", "CompactedError",
    "FutureRevisionError", "LeaseNotFoundError", "AuthError", "ConflictError", "NotFoundError", "SchemaError",
    "LockLostError",
]  # fmt: skip


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert globaldb.__all__ == PINNED
    for name in PINNED:
        assert getattr(globaldb, name) is not None


def test_every_error_is_rooted_at_globaldb_error() -> None:
    errors = [getattr(globaldb, n) for n in PINNED if n.endswith("Error") and n != "GlobalDBError"]
    assert errors
    assert all(issubclass(e, globaldb.GlobalDBError) for e in errors)


def test_both_backends_satisfy_the_kvstore_protocol() -> None:
    assert isinstance(SQLiteStore(), KVStore)
    assert isinstance(EtcdClient.connect("127.0.0.1:2379"), KVStore)
