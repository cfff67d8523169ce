"""mycelium-meshnet: see README.md. The public API is exactly what `__all__` lists."""

from importlib.metadata import version as _version

from meshnet._certs import DEFAULT_NODE_CERT_VALIDITY, NodeCertificate
from meshnet._codec import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from meshnet._connect import connect
from meshnet._credentials import MeshCredentials
from meshnet._errors import (
    CertificateError,
    DecodeError,
    FrameTooLargeError,
    HandshakeError,
    IdentityError,
    KeyFileError,
    MeshnetError,
    PeerUnreachableError,
    StreamClosedError,
)
from meshnet._grpc import GrpcAuthenticator, MeshGrpcServer, grpc_channel
from meshnet._handshake import REFUSAL_REASONS
from meshnet._identity import NodeIdentity, node_id_for, verify_signature
from meshnet._multihome import (
    CallOutcomeUnknownError,
    Connector,
    FrameChannel,
    MultiHomeConfig,
    MultiHomedClient,
    MultiHomeError,
    NoHealthyPeerError,
    PeerSelector,
    PeerStatus,
    RemoteCallError,
    RpcConnection,
    mesh_connector,
    serve_calls,
)
from meshnet._network import NetworkIdentity
from meshnet._observe import MeshnetMetrics
from meshnet._peer import PeerInfo
from meshnet._ports import free_port
from meshnet._pull import (
    ChunkManifest,
    PullError,
    PullResult,
    PullScheduler,
    RangeSource,
    RpcRangeSource,
    parallel_pull,
    range_handler,
)
from meshnet._revocation import RevocationList
from meshnet._server import MeshServer
from meshnet._stream import FramedStream
from meshnet._trust import ALL_PERMISSIONS, FederationLink, NetworkTrust

__version__ = _version("mycelium-meshnet")

__all__: list[str] = [
    # identities
    "NodeIdentity",
    "NetworkIdentity",
    "node_id_for",
    "verify_signature",
    # certificates and trust
    "NodeCertificate",
    "NetworkTrust",
    "FederationLink",
    "RevocationList",
    "ALL_PERMISSIONS",
    "DEFAULT_NODE_CERT_VALIDITY",
    # transport
    "MeshCredentials",
    "MeshServer",
    "connect",
    "FramedStream",
    "PeerInfo",
    "free_port",
    "grpc_channel",
    "GrpcAuthenticator",
    "MeshGrpcServer",
    "MeshnetMetrics",
    "REFUSAL_REASONS",
    "FrameDecoder",
    "encode_frame",
    "DEFAULT_MAX_FRAME_SIZE",
    # multi-homing and parallel pull
    "MultiHomedClient",
    "MultiHomeConfig",
    "PeerSelector",
    "PeerStatus",
    "RpcConnection",
    "serve_calls",
    "mesh_connector",
    "FrameChannel",
    "Connector",
    "ChunkManifest",
    "PullScheduler",
    "PullResult",
    "parallel_pull",
    "RangeSource",
    "RpcRangeSource",
    "range_handler",
    "MultiHomeError",
    "RemoteCallError",
    "NoHealthyPeerError",
    "CallOutcomeUnknownError",
    "PullError",
    # errors
    "MeshnetError",
    "IdentityError",
    "KeyFileError",
    "CertificateError",
    "DecodeError",
    "FrameTooLargeError",
    "HandshakeError",
    "StreamClosedError",
    "PeerUnreachableError",
]
