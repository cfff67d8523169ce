"""The public surface of `blockstore` is pinned: changing it is a deliberate act that edits this list."""

import blockstore

EXPECTED: list[str] = [
    "VolumeSpec",
    "WritePolicy",
    "Volume",
    "VolumeStats",
    "VolumeMetrics",
    "Keyring",
    "Replica",
    "Completion",
    "LocalReplica",
    "StorageNodeInfo",
    "place_chunk",
    "ReplicaHealth",
    "ReplicaSetState",
    "RoundOutcome",
    "WriteRound",
    "BlockDevice",
    "NbdServer",
    "serve_nbd",
    "ExportInfo",
    "NbdServerConnection",
    "NbdRequest",
    "NbdExportChosen",
    "NbdDisconnect",
    "NbdStartTls",
    "NeedData",
    "NEED_DATA",
    "BlockstoreError",
    "ConfigError",
    "OutOfRangeError",
    "ReplicaUnavailableError",
    "InsufficientReplicasError",
    "CorruptBlockError",
    "EncryptionError",
    "WireError",
    "NbdProtocolError",
]


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(blockstore.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in blockstore.__all__:
        assert getattr(blockstore, name) is not None, name
