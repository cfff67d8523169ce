"""The wire messages of ``protos/bftconsensus.proto`` as slotted dataclasses (codec: ``_protocodec``).

Why not the generated betterproto classes on this path: betterproto routes every attribute read
through a Python-level ``__getattribute__`` and rebuilds field defaults under a warnings filter on
each access; profiling a 4-replica PBFT cluster showed three quarters of its CPU time there, more
than in Ed25519. These classes have the same names, field names, field order (so the same
positional constructors), ``bytes(msg)`` and ``Msg().parse(data)`` as the generated ones, and
read and write the SAME wire format: a differential hypothesis test checks both directions
against the committed betterproto code, which stays the schema of record.

Decoding is bounded while it parses (total size, string length, repeated counts, from
:class:`bftconsensus.WireLimits`), and any malformed input raises ``DecodeError``; nothing else
escapes, whatever the bytes.
"""

from __future__ import annotations

import dataclasses

from bftconsensus._protocodec import BOOL, BYTES, RSTR, STR, U32, U64, Message, msg, rmsg, schema

__all__ = [
    "Message",
    "Signed",
    "Operation",
    "ExecuteRequest",
    "Commit",
    "RevealRequest",
    "Reveal",
    "Evidence",
    "EligibleNode",
    "Attempt",
    "Verdict",
    "ClientRequest",
    "ClientLink",
    "PrePrepare",
    "Prepare",
    "CommitVote",
    "Reply",
    "Replies",
    "Checkpoint",
    "PreparedProof",
    "ViewChange",
    "NewView",
    "StateRequest",
    "StateResponse",
    "ClientEntry",
    "ReplicaState",
]


@schema(U32, BYTES, STR, BYTES, BYTES)
@dataclasses.dataclass(slots=True)
class Signed(Message):
    kind: int = 0
    body: bytes = b""
    signer: str = ""
    signature: bytes = b""
    macs: bytes = b""


# ---- commit-reveal quorum execution ----


@schema(STR, STR, BYTES, STR)
@dataclasses.dataclass(slots=True)
class Operation(Message):
    op_id: str = ""
    function: str = ""
    input: bytes = b""
    client: str = ""


@schema(msg(Signed), U32)
@dataclasses.dataclass(slots=True)
class ExecuteRequest(Message):
    operation: Signed = dataclasses.field(default_factory=Signed)
    attempt: int = 0


@schema(STR, U32, STR, BYTES)
@dataclasses.dataclass(slots=True)
class Commit(Message):
    op_id: str = ""
    attempt: int = 0
    executor: str = ""
    digest: bytes = b""


@schema(STR, U32)
@dataclasses.dataclass(slots=True)
class RevealRequest(Message):
    op_id: str = ""
    attempt: int = 0


@schema(STR, U32, STR, BYTES, BYTES)
@dataclasses.dataclass(slots=True)
class Reveal(Message):
    op_id: str = ""
    attempt: int = 0
    executor: str = ""
    result: bytes = b""
    nonce: bytes = b""


@schema(U32, STR, rmsg(Signed), U32)
@dataclasses.dataclass(slots=True)
class Evidence(Message):
    kind: int = 0
    accused: str = ""
    messages: list[Signed] = dataclasses.field(default_factory=list)
    attempt: int = 0


@schema(STR, U64)
@dataclasses.dataclass(slots=True)
class EligibleNode(Message):
    node: str = ""
    weight: int = 0


@schema(U32, RSTR, rmsg(Signed), rmsg(Signed), rmsg(Signed))
@dataclasses.dataclass(slots=True)
class Attempt(Message):
    attempt: int = 0
    quorum: list[str] = dataclasses.field(default_factory=list)
    commits: list[Signed] = dataclasses.field(default_factory=list)
    reveals: list[Signed] = dataclasses.field(default_factory=list)
    late_reveals: list[Signed] = dataclasses.field(default_factory=list)


@schema(
    msg(Signed), BYTES, rmsg(EligibleNode), U32, U32, U32, rmsg(Attempt), BOOL, BYTES, RSTR, RSTR,
    rmsg(Evidence), U64, STR,
)  # fmt: skip
@dataclasses.dataclass(slots=True)
class Verdict(Message):
    operation: Signed = dataclasses.field(default_factory=Signed)
    beacon: bytes = b""
    eligible: list[EligibleNode] = dataclasses.field(default_factory=list)
    rule: int = 0
    base_quorum: int = 0
    quorum_growth: int = 0
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    accepted: bool = False
    result: bytes = b""
    agreeing: list[str] = dataclasses.field(default_factory=list)
    dissenting: list[str] = dataclasses.field(default_factory=list)
    evidence: list[Evidence] = dataclasses.field(default_factory=list)
    time_ms: int = 0
    coordinator: str = ""


# ---- PBFT state-machine replication ----


@schema(STR, U64, BYTES)
@dataclasses.dataclass(slots=True)
class ClientRequest(Message):
    client: str = ""
    timestamp: int = 0
    operation: bytes = b""


@schema(STR, STR, BYTES)
@dataclasses.dataclass(slots=True)
class ClientLink(Message):
    client: str = ""
    peer: str = ""
    mac_key: bytes = b""


@schema(U64, U64, BYTES, rmsg(Signed))
@dataclasses.dataclass(slots=True)
class PrePrepare(Message):
    view: int = 0
    seq: int = 0
    digest: bytes = b""
    requests: list[Signed] = dataclasses.field(default_factory=list)


@schema(U64, U64, BYTES, STR)
@dataclasses.dataclass(slots=True)
class Prepare(Message):
    view: int = 0
    seq: int = 0
    digest: bytes = b""
    replica: str = ""


@schema(U64, U64, BYTES, STR)
@dataclasses.dataclass(slots=True)
class CommitVote(Message):
    view: int = 0
    seq: int = 0
    digest: bytes = b""
    replica: str = ""


@schema(U64, U64, STR, STR, BYTES)
@dataclasses.dataclass(slots=True)
class Reply(Message):
    view: int = 0
    timestamp: int = 0
    client: str = ""
    replica: str = ""
    result: bytes = b""


@schema(rmsg(Reply))
@dataclasses.dataclass(slots=True)
class Replies(Message):
    replies: list[Reply] = dataclasses.field(default_factory=list)


@schema(U64, BYTES, STR)
@dataclasses.dataclass(slots=True)
class Checkpoint(Message):
    seq: int = 0
    state_digest: bytes = b""
    replica: str = ""


@schema(msg(Signed), rmsg(Signed))
@dataclasses.dataclass(slots=True)
class PreparedProof(Message):
    pre_prepare: Signed = dataclasses.field(default_factory=Signed)
    prepares: list[Signed] = dataclasses.field(default_factory=list)


@schema(U64, U64, rmsg(Signed), rmsg(PreparedProof), STR)
@dataclasses.dataclass(slots=True)
class ViewChange(Message):
    new_view: int = 0
    stable_seq: int = 0
    checkpoint_proof: list[Signed] = dataclasses.field(default_factory=list)
    prepared: list[PreparedProof] = dataclasses.field(default_factory=list)
    replica: str = ""


@schema(U64, rmsg(Signed), rmsg(Signed))
@dataclasses.dataclass(slots=True)
class NewView(Message):
    view: int = 0
    view_changes: list[Signed] = dataclasses.field(default_factory=list)
    pre_prepares: list[Signed] = dataclasses.field(default_factory=list)


@schema(U64, STR)
@dataclasses.dataclass(slots=True)
class StateRequest(Message):
    seq: int = 0
    replica: str = ""


@schema(U64, BYTES, rmsg(Signed), msg(Signed))
@dataclasses.dataclass(slots=True)
class StateResponse(Message):
    seq: int = 0
    snapshot: bytes = b""
    checkpoint_proof: list[Signed] = dataclasses.field(default_factory=list)
    new_view: Signed = dataclasses.field(default_factory=Signed)


@schema(STR, U64, BYTES)
@dataclasses.dataclass(slots=True)
class ClientEntry(Message):
    client: str = ""
    timestamp: int = 0
    result: bytes = b""


@schema(BYTES, rmsg(ClientEntry), RSTR, RSTR, U64)
@dataclasses.dataclass(slots=True)
class ReplicaState(Message):
    application: bytes = b""
    clients: list[ClientEntry] = dataclasses.field(default_factory=list)
    members: list[str] = dataclasses.field(default_factory=list)
    next_members: list[str] = dataclasses.field(default_factory=list)
    reconfig_at: int = 0
