"""mycelium-blockstore: replicated virtual disks served over NBD.

The public API is exactly what ``__all__`` lists; everything else lives in private modules.
"""

from importlib.metadata import version as _version

from ._crypto import Keyring
from ._errors import (
    BlockstoreError,
    ConfigError,
    CorruptBlockError,
    EncryptionError,
    InsufficientReplicasError,
    NbdProtocolError,
    OutOfRangeError,
    ReplicaUnavailableError,
    WireError,
)
from ._nbd import (
    NEED_DATA,
    ExportInfo,
    NbdDisconnect,
    NbdExportChosen,
    NbdRequest,
    NbdServerConnection,
    NbdStartTls,
    NeedData,
)
from ._nbd_server import BlockDevice, NbdServer, serve_nbd
from ._observe import VolumeMetrics
from ._placement import StorageNodeInfo, place_chunk
from ._replica import Completion, LocalReplica, Replica
from ._replication import ReplicaHealth, ReplicaSetState, RoundOutcome, WriteRound
from ._spec import VolumeSpec, WritePolicy
from ._volume import Volume, VolumeStats

__version__ = _version("mycelium-blockstore")

__all__: list[str] = [
    # volumes
    "VolumeSpec",
    "WritePolicy",
    "Volume",
    "VolumeStats",
    "VolumeMetrics",
    "Keyring",
    # replicas and placement
    "Replica",
    "Completion",
    "LocalReplica",
    "StorageNodeInfo",
    "place_chunk",
    "ReplicaHealth",
    "ReplicaSetState",
    "RoundOutcome",
    "WriteRound",
    # NBD
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
    # errors
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
