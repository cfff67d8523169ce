"""The public surface of `bftconsensus` is pinned: changing it is a deliberate act that edits this list."""

import bftconsensus

EXPECTED: list[str] = [
    "BftConsensusError",
    "ConfigError",
    "DecodeError",
    "NoMajorityError",
    "UnknownFunctionError",
    "VerificationError",
    "Signer",
    "Ed25519Signer",
    "KeyDirectory",
    "Kind",
    "WireLimits",
    "decode_frame",
    "Action",
    "Send",
    "SendReply",
    "SetTimer",
    "CancelTimer",
    "QuorumConfig",
    "MajorityRule",
    "select_quorum",
    "commit_digest",
    "DeterministicFunction",
    "Executor",
    "QuorumRun",
    "Phase",
    "Evidence",
    "EvidenceKind",
    "Verdict",
    "verify_verdict",
    "sign_operation",
    "execute_in_process",
    "TrustParams",
    "TrustLedger",
    "NodeStatus",
    "TrustEvent",
    "ReplicaConfig",
    "StateMachine",
    "KeyValueStore",
    "Replica",
    "Client",
    "reconfigure_operation",
    "ReplicaService",
    "ClusterClient",
    "ReplicaMetrics",
]


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(bftconsensus.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in bftconsensus.__all__:
        assert getattr(bftconsensus, name) is not None, name
