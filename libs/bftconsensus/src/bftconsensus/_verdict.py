"""The verdict of a quorum execution, and its re-verification from the signed messages alone.

A verdict carries the client-signed operation, the selection inputs (beacon, eligible nodes and
their weights, quorum parameters) and every signed commit and reveal of every attempt. A verifier
recomputes each quorum, re-checks every signature, re-runs the tally and the evidence analysis and
accepts the verdict only when everything it claims follows from those messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from bftconsensus import _messages as pb
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import DecodeError, VerificationError
from bftconsensus._evidence import AttemptOutcome, AttemptRecord, Evidence, EvidenceKind, analyse_attempt
from bftconsensus._quorum import MajorityRule, QuorumConfig, select_quorum
from bftconsensus._wire import DEFAULT_LIMITS, Kind, WireLimits, decode_frame, open_signed, seal

__all__ = ["Verdict", "build_verdict", "verify_verdict", "summarise"]


@attrs.frozen
class Verdict:
    """The outcome of one operation: canonical result (if any), who agreed, who dissented, evidence.

    ``frame`` is the coordinator-signed encoding; :func:`verify_verdict` rebuilds this object from
    it, so a verdict received from anyone can be checked without trusting them.
    """

    op_id: str
    function: str
    input: bytes
    accepted: bool
    result: bytes | None
    agreeing: tuple[str, ...]
    dissenting: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    attempts: int
    time_ms: int
    coordinator: str
    revealed: dict[bytes, tuple[str, ...]] = attrs.field(eq=False, repr=False)
    frame: bytes = attrs.field(eq=False, repr=False)


def summarise(
    keys: KeyDirectory, op_id: str, records: Sequence[AttemptRecord], rule: MajorityRule
) -> tuple[list[AttemptOutcome], bytes | None, tuple[str, ...], tuple[str, ...], tuple[Evidence, ...]]:
    """Analyse every attempt; the canonical result is the last attempt's winner, if any."""
    outcomes = [analyse_attempt(keys, op_id, rec, rule) for rec in records]
    canonical = outcomes[-1].canonical if outcomes else None
    agreeing: set[str] = set()
    dissenting: set[str] = set()
    if canonical is not None:
        for out in outcomes:
            for result, who in out.tally.items():
                (agreeing if result == canonical else dissenting).update(who)
    agreeing -= dissenting
    evidence = tuple(sorted((e for o in outcomes for e in o.evidence), key=Evidence.sort_key))
    return outcomes, canonical, tuple(sorted(agreeing)), tuple(sorted(dissenting)), evidence


def _revealed(outcomes: Sequence[AttemptOutcome]) -> dict[bytes, tuple[str, ...]]:
    merged: dict[bytes, set[str]] = {}
    for out in outcomes:
        for result, who in out.tally.items():
            merged.setdefault(result, set()).update(who)
    return {r: tuple(sorted(w)) for r, w in merged.items()}


def build_verdict(
    coordinator: Signer,
    keys: KeyDirectory,
    operation: pb.Signed,
    beacon: bytes,
    eligible: Sequence[tuple[str, int]],
    config: QuorumConfig,
    records: Sequence[AttemptRecord],
    time_ms: int,
) -> Verdict:
    """Sign the verdict that ``records`` imply (the coordinator's side)."""
    op = open_signed(keys, operation, pb.Operation)
    outcomes, canonical, agreeing, dissenting, evidence = summarise(keys, op.op_id, records, config.rule)
    msg = pb.Verdict(
        operation=operation,
        beacon=beacon,
        eligible=[pb.EligibleNode(node=n, weight=w) for n, w in sorted(eligible)],
        rule=int(config.rule),
        base_quorum=config.base_quorum,
        quorum_growth=config.quorum_growth,
        attempts=[
            pb.Attempt(
                attempt=r.attempt,
                quorum=list(r.quorum),
                commits=list(r.commits),
                reveals=list(r.reveals),
                late_reveals=list(r.late_reveals),
            )
            for r in records
        ],
        accepted=canonical is not None,
        result=canonical or b"",
        agreeing=list(agreeing),
        dissenting=list(dissenting),
        evidence=[
            pb.Evidence(
                kind=int(e.kind),
                accused=e.accused,
                attempt=e.attempt,
                messages=[decode_frame(m) for m in e.messages],
            )
            for e in evidence
        ],
        time_ms=time_ms,
        coordinator=coordinator.node_id,
    )
    env = seal(coordinator, Kind.VERDICT, msg)
    return Verdict(
        op_id=op.op_id,
        function=op.function,
        input=op.input,
        accepted=canonical is not None,
        result=canonical,
        agreeing=agreeing,
        dissenting=dissenting,
        evidence=evidence,
        attempts=len(records),
        time_ms=time_ms,
        coordinator=coordinator.node_id,
        revealed=_revealed(outcomes),
        frame=bytes(env),
    )


def verify_verdict(frame: bytes, keys: KeyDirectory, limits: WireLimits = DEFAULT_LIMITS) -> Verdict:
    """Rebuild a :class:`Verdict` from its signed frame, or raise :class:`VerificationError`.

    ``keys`` must hold the public keys of the coordinator, the client and every executor.
    """
    try:
        env = decode_frame(frame, limits)
        msg = open_signed(keys, env, pb.Verdict, limits)
        op = open_signed(keys, msg.operation, pb.Operation, limits)
    except DecodeError as exc:
        raise VerificationError(f"verdict does not decode: {exc}") from exc
    if msg.coordinator != env.signer:
        raise VerificationError(
            f"verdict names coordinator {msg.coordinator!r} but is signed by {env.signer!r}"
        )
    try:
        config = QuorumConfig(
            base_quorum=msg.base_quorum,
            quorum_growth=msg.quorum_growth,
            max_attempts=max(1, len(msg.attempts)),
            rule=MajorityRule(msg.rule),
        )
    except (ValueError, TypeError) as exc:
        raise VerificationError(f"verdict quorum parameters are invalid: {exc}") from exc
    eligible = [(e.node, e.weight) for e in msg.eligible]
    positive = sum(1 for _, w in eligible if w > 0)
    if not msg.attempts:
        raise VerificationError("verdict has no attempts")
    records: list[AttemptRecord] = []
    for i, att in enumerate(msg.attempts):
        if att.attempt != i:
            raise VerificationError(f"attempt {i} is numbered {att.attempt}")
        expected = select_quorum(msg.beacon, op.op_id, i, eligible, config.quorum_size(i, positive))
        if list(att.quorum) != expected:
            raise VerificationError(
                f"attempt {i}: quorum {att.quorum} is not the one the beacon selects {expected}"
            )
        records.append(
            AttemptRecord(
                i, tuple(att.quorum), tuple(att.commits), tuple(att.reveals), tuple(att.late_reveals)
            )
        )
    outcomes, canonical, agreeing, dissenting, evidence = summarise(keys, op.op_id, records, config.rule)
    if any(o.canonical is not None for o in outcomes[:-1]):
        raise VerificationError(
            "an earlier attempt already had a majority; the verdict should have stopped there"
        )
    claimed = tuple(
        sorted(
            (
                Evidence(EvidenceKind(e.kind), e.accused, e.attempt, tuple(bytes(m) for m in e.messages))
                for e in msg.evidence
                if e.kind in EvidenceKind._value2member_map_
            ),
            key=Evidence.sort_key,
        )
    )
    checks = [
        ("accepted", msg.accepted, canonical is not None),
        ("result", msg.result, canonical or b""),
        ("agreeing", tuple(msg.agreeing), agreeing),
        ("dissenting", tuple(msg.dissenting), dissenting),
        ("evidence", (len(msg.evidence), claimed), (len(evidence), evidence)),
    ]
    for name, got, want in checks:
        if got != want:
            raise VerificationError(f"verdict field {name} does not follow from its signed messages")
    return Verdict(
        op_id=op.op_id,
        function=op.function,
        input=op.input,
        accepted=canonical is not None,
        result=canonical,
        agreeing=agreeing,
        dissenting=dissenting,
        evidence=evidence,
        attempts=len(records),
        time_ms=msg.time_ms,
        coordinator=msg.coordinator,
        revealed=_revealed(outcomes),
        frame=frame,
    )
