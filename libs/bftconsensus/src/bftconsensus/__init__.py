"""mycelium-bftconsensus: untrusted nodes compute redundantly and agree on the answer.

Three parts, each usable alone:

* commit-reveal quorum execution (:class:`QuorumRun`, :class:`Executor`, :func:`verify_verdict`);
* a trust ledger derived deterministically from the verdict log (:class:`TrustLedger`);
* PBFT state-machine replication (:class:`Replica`, :class:`Client`).

Cores are sans-I/O: they take frames and timer events and return :class:`Send` /
:class:`SetTimer` / :class:`CancelTimer` actions. The public API is exactly what ``__all__`` lists.
"""

from importlib.metadata import version as _version

from bftconsensus._actions import Action, CancelTimer, Send, SendReply, SetTimer
from bftconsensus._client import Client
from bftconsensus._coordinator import Phase, QuorumRun
from bftconsensus._crypto import Ed25519Signer, KeyDirectory, Signer
from bftconsensus._driver import ClusterClient, ReplicaService
from bftconsensus._errors import (
    BftConsensusError,
    ConfigError,
    DecodeError,
    NoMajorityError,
    UnknownFunctionError,
    VerificationError,
)
from bftconsensus._evidence import Evidence, EvidenceKind, commit_digest
from bftconsensus._executor import DeterministicFunction, Executor
from bftconsensus._local import execute_in_process, sign_operation
from bftconsensus._metrics import ReplicaMetrics
from bftconsensus._quorum import MajorityRule, QuorumConfig, select_quorum
from bftconsensus._replica import Replica
from bftconsensus._smr import KeyValueStore, ReplicaConfig, StateMachine, reconfigure_operation
from bftconsensus._trust import NodeStatus, TrustEvent, TrustLedger, TrustParams
from bftconsensus._verdict import Verdict, verify_verdict
from bftconsensus._wire import Kind, WireLimits, decode_frame

__version__ = _version("mycelium-bftconsensus")

__all__: list[str] = [
    # errors
    "BftConsensusError",
    "ConfigError",
    "DecodeError",
    "NoMajorityError",
    "UnknownFunctionError",
    "VerificationError",
    # identities and wire
    "Signer",
    "Ed25519Signer",
    "KeyDirectory",
    "Kind",
    "WireLimits",
    "decode_frame",
    # sans-I/O actions
    "Action",
    "Send",
    "SendReply",
    "SetTimer",
    "CancelTimer",
    # commit-reveal quorum execution
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
    # trust ledger
    "TrustParams",
    "TrustLedger",
    "NodeStatus",
    "TrustEvent",
    # BFT state-machine replication
    "ReplicaConfig",
    "StateMachine",
    "KeyValueStore",
    "Replica",
    "Client",
    "reconfigure_operation",
    # anyio drivers over meshnet
    "ReplicaService",
    "ClusterClient",
    "ReplicaMetrics",
]
