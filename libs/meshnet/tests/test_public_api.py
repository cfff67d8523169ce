"""The public surface of `meshnet` is pinned: changing it is a deliberate act that edits this list."""

import meshnet

EXPECTED: list[str] = [
    "NodeIdentity",
    "NetworkIdentity",
    "node_id_for",
    "verify_signature",
    "NodeCertificate",
    "NetworkTrust",
    "FederationLink",
    "RevocationList",
    "ALL_PERMISSIONS",
    "DEFAULT_NODE_CERT_VALIDITY",
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


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(meshnet.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in meshnet.__all__:
        assert getattr(meshnet, name) is not None, name
