"""Commitments, evidence kinds, and the pure analysis of one attempt's signed messages.

The coordinator and every verifier run the same :func:`analyse_attempt` over the same signed
commits and reveals, so the tally and the evidence in a verdict are reproducible by anyone.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence

import attrs

from bftconsensus import _messages as pb
from bftconsensus._crypto import KeyDirectory
from bftconsensus._errors import DecodeError, VerificationError
from bftconsensus._quorum import MajorityRule, required_votes
from bftconsensus._wire import open_signed

__all__ = [
    "EvidenceKind",
    "Evidence",
    "AttemptRecord",
    "AttemptOutcome",
    "commit_digest",
    "analyse_attempt",
    "votes_needed",
]


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def commit_digest(result: bytes, nonce: bytes, executor: str, op_id: str) -> bytes:
    """H(result ‖ nonce ‖ executor id ‖ operation id), each part length-prefixed so no two
    different tuples hash the same input. Binding the executor id makes a copied commit useless:
    only the executor it names can open it."""
    return hashlib.sha256(
        b"bftconsensus.commit\x00" + _lp(result) + _lp(nonce) + _lp(executor.encode()) + _lp(op_id.encode())
    ).digest()


class EvidenceKind(enum.IntEnum):
    """A protocol fault, with the signed messages that show it."""

    MISSING_COMMIT = 1  # in the quorum, no commit by the deadline (attested by the coordinator)
    MISSING_REVEAL = 2  # committed, never revealed
    LATE_REVEAL = 3  # revealed after the reveal deadline (timing attested by the coordinator)
    REVEAL_MISMATCH = 4  # provable: the signed reveal does not open the signed commit
    COPIED_COMMIT = 5  # provable: signed another executor's digest and could not open it
    EQUIVOCATION = 6  # provable: two different signed commits or reveals for one attempt

    @property
    def provable(self) -> bool:
        """True when the signed messages alone prove the fault (no timing claim involved)."""
        return self in (EvidenceKind.REVEAL_MISMATCH, EvidenceKind.COPIED_COMMIT, EvidenceKind.EQUIVOCATION)


@attrs.frozen
class Evidence:
    """One fault: who, which attempt, and the encoded ``Signed`` messages that show it."""

    kind: EvidenceKind
    accused: str
    attempt: int
    messages: tuple[bytes, ...] = ()

    def sort_key(self) -> tuple[int, int, str, tuple[bytes, ...]]:
        return (self.attempt, int(self.kind), self.accused, self.messages)


@attrs.frozen
class AttemptRecord:
    """The signed messages one attempt collected (what a verdict carries)."""

    attempt: int
    quorum: tuple[str, ...]
    commits: tuple[pb.Signed, ...] = ()
    reveals: tuple[pb.Signed, ...] = ()
    late_reveals: tuple[pb.Signed, ...] = ()


@attrs.frozen
class AttemptOutcome:
    tally: dict[bytes, tuple[str, ...]]
    canonical: bytes | None
    evidence: tuple[Evidence, ...]


def votes_needed(rule: MajorityRule, quorum_size: int) -> int:
    """Votes a result needs; never less than a strict majority, so at most one result can win."""
    return max(required_votes(rule, quorum_size), quorum_size // 2 + 1)


def _open_all(
    keys: KeyDirectory,
    envs: Sequence[pb.Signed],
    cls: type[pb.Commit] | type[pb.Reveal],
    op_id: str,
    rec: AttemptRecord,
) -> list[tuple[pb.Signed, pb.Commit | pb.Reveal]]:
    out: list[tuple[pb.Signed, pb.Commit | pb.Reveal]] = []
    for env in envs:
        try:
            body = open_signed(keys, env, cls)
        except DecodeError as exc:
            raise VerificationError(f"attempt {rec.attempt}: {exc}") from exc
        if body.op_id != op_id or body.attempt != rec.attempt or body.executor != env.signer:
            raise VerificationError(
                f"attempt {rec.attempt}: {cls.__name__} signed by {env.signer!r} is for "
                f"({body.op_id!r}, attempt {body.attempt}, executor {body.executor!r})"
            )
        if env.signer not in rec.quorum:
            raise VerificationError(f"attempt {rec.attempt}: {env.signer!r} is not in the quorum")
        out.append((env, body))
    return out


def analyse_attempt(keys: KeyDirectory, op_id: str, rec: AttemptRecord, rule: MajorityRule) -> AttemptOutcome:
    """Tally valid on-time reveals and derive every piece of evidence from the signed messages."""
    commits = _open_all(keys, rec.commits, pb.Commit, op_id, rec)
    reveals = _open_all(keys, rec.reveals, pb.Reveal, op_id, rec)
    late = _open_all(keys, rec.late_reveals, pb.Reveal, op_id, rec)
    evidence: list[Evidence] = []
    by_exec_commit: dict[str, list[tuple[pb.Signed, pb.Commit | pb.Reveal]]] = {}
    for env, body in commits:
        by_exec_commit.setdefault(env.signer, []).append((env, body))
    by_exec_reveal: dict[str, list[tuple[pb.Signed, pb.Commit | pb.Reveal]]] = {}
    for env, body in reveals:
        by_exec_reveal.setdefault(env.signer, []).append((env, body))
    late_by_exec = {env.signer: (env, body) for env, body in late}
    equivocators: set[str] = set()
    for table in (by_exec_commit, by_exec_reveal):
        for executor, items in table.items():
            distinct = {bytes(env.body): env for env, _ in items}
            if len(distinct) > 1:
                two = sorted(distinct)[:2]
                equivocators.add(executor)
                evidence.append(
                    Evidence(
                        EvidenceKind.EQUIVOCATION,
                        executor,
                        rec.attempt,
                        tuple(bytes(distinct[b]) for b in two),
                    )
                )
    digests: dict[bytes, list[str]] = {}
    for executor, items in by_exec_commit.items():
        body = items[0][1]
        assert isinstance(body, pb.Commit)
        digests.setdefault(body.digest, []).append(executor)
    tally: dict[bytes, list[str]] = {}
    for executor in sorted(by_exec_commit):
        if executor in equivocators:
            continue
        cenv, cbody = by_exec_commit[executor][0]
        assert isinstance(cbody, pb.Commit)
        copied_from = sorted(o for o in digests[cbody.digest] if o != executor)
        revealed = by_exec_reveal.get(executor, [None])[0] or late_by_exec.get(executor)
        opens = False
        if revealed is not None:
            rbody = revealed[1]
            assert isinstance(rbody, pb.Reveal)
            opens = commit_digest(rbody.result, rbody.nonce, executor, op_id) == cbody.digest
        if opens and executor in by_exec_reveal:
            assert revealed is not None
            assert isinstance(revealed[1], pb.Reveal)
            tally.setdefault(revealed[1].result, []).append(executor)
            continue
        if opens:
            assert revealed is not None
            evidence.append(
                Evidence(EvidenceKind.LATE_REVEAL, executor, rec.attempt, (bytes(cenv), bytes(revealed[0])))
            )
            continue
        extra = (bytes(revealed[0]),) if revealed is not None else ()
        if copied_from:
            other = by_exec_commit[copied_from[0]][0][0]
            evidence.append(
                Evidence(
                    EvidenceKind.COPIED_COMMIT, executor, rec.attempt, (bytes(cenv), bytes(other), *extra)
                )
            )
        elif revealed is not None:
            evidence.append(
                Evidence(EvidenceKind.REVEAL_MISMATCH, executor, rec.attempt, (bytes(cenv), *extra))
            )
        else:
            evidence.append(Evidence(EvidenceKind.MISSING_REVEAL, executor, rec.attempt, (bytes(cenv),)))
    for member in rec.quorum:
        if member not in by_exec_commit:
            evidence.append(Evidence(EvidenceKind.MISSING_COMMIT, member, rec.attempt))
    need = votes_needed(rule, len(rec.quorum))
    winners = [r for r, who in tally.items() if len(who) >= need]
    canonical = winners[0] if winners else None
    return AttemptOutcome(
        tally={r: tuple(sorted(w)) for r, w in sorted(tally.items())},
        canonical=canonical,
        evidence=tuple(sorted(evidence, key=Evidence.sort_key)),
    )
