"""Commit-reveal quorum execution: honest agreement, each Byzantine behaviour, retries, failure."""

from __future__ import annotations

import hashlib

import pytest

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._wire import Kind, seal


class WrongResult(b.Executor):
    def compute(self, function: str, data: bytes) -> bytes:
        return b"wrong:" + self.signer.node_id.encode()


class AgreedWrong(b.Executor):
    """Colluding executors returning the same wrong answer."""

    def compute(self, function: str, data: bytes) -> bytes:
        return b"colluded"


class Withholder(b.Executor):
    def make_reveal(self, op_id: str, attempt: int, result: bytes, nonce: bytes) -> pb.Signed | None:
        return None


class Mismatcher(b.Executor):
    def make_reveal(self, op_id: str, attempt: int, result: bytes, nonce: bytes) -> pb.Signed | None:
        return super().make_reveal(op_id, attempt, result, b"other-nonce")


def executors(world, keys, functions, n=5, bad=None):
    bad = bad or {}
    return [bad.get(f"e{i}", b.Executor)(world[f"e{i}"], keys, functions) for i in range(n)]


def run(world, keys, exs, *, op_id="op-1", config=None, silent=frozenset(), data=b"hello"):
    op = b.sign_operation(world["client"], op_id, "sha256", data)
    return b.execute_in_process(
        world["coord"], keys, op, exs, beacon=b"beacon-1", config=config, silent=silent
    )


def quorum_for(op_id: str, n: int, attempt: int = 0, size: int = 3) -> list[str]:
    return b.select_quorum(b"beacon-1", op_id, attempt, [(f"e{i}", 1) for i in range(n)], size)


def test_honest_quorum_agrees_on_the_true_result(world, keys, functions) -> None:
    v = run(world, keys, executors(world, keys, functions))
    assert v.accepted
    assert v.result == hashlib.sha256(b"hello").digest()
    assert set(v.agreeing) == set(quorum_for("op-1", 5))
    assert v.dissenting == ()
    assert v.evidence == ()
    assert b.verify_verdict(v.frame, keys) == v


def test_a_wrong_result_is_outvoted_and_named_as_dissent(world, keys, functions) -> None:
    q = quorum_for("op-1", 5)
    v = run(world, keys, executors(world, keys, functions, bad={q[0]: WrongResult}))
    assert v.accepted
    assert v.result == hashlib.sha256(b"hello").digest()
    assert v.dissenting == (q[0],)
    assert q[0] not in v.agreeing


def test_withheld_reveal_is_evidence_and_majority_still_decides(world, keys, functions) -> None:
    q = quorum_for("op-1", 5)
    v = run(world, keys, executors(world, keys, functions, bad={q[1]: Withholder}))
    assert v.accepted
    assert [(e.kind, e.accused) for e in v.evidence] == [(b.EvidenceKind.MISSING_REVEAL, q[1])]
    assert b.verify_verdict(v.frame, keys).evidence == v.evidence


def test_reveal_that_does_not_open_its_commit_is_provable_evidence(world, keys, functions) -> None:
    q = quorum_for("op-1", 5)
    v = run(world, keys, executors(world, keys, functions, bad={q[2]: Mismatcher}))
    kinds = {(e.kind, e.accused) for e in v.evidence}
    assert kinds == {(b.EvidenceKind.REVEAL_MISMATCH, q[2])}
    assert b.EvidenceKind.REVEAL_MISMATCH.provable
    (ev,) = v.evidence
    assert len(ev.messages) == 2  # the signed commit and the signed reveal


def test_missing_commit_is_evidence(world, keys, functions) -> None:
    q = quorum_for("op-1", 5)
    v = run(world, keys, executors(world, keys, functions), silent=frozenset({q[0]}))
    assert v.accepted
    assert [(e.kind, e.accused) for e in v.evidence] == [(b.EvidenceKind.MISSING_COMMIT, q[0])]


def test_copied_commit_cannot_be_opened_by_the_copier(world, keys, functions) -> None:
    op = b.sign_operation(world["client"], "op-c", "sha256", b"x")
    q = quorum_for("op-c", 5)
    exs = {e.signer.node_id: e for e in executors(world, keys, functions)}
    run_ = b.QuorumRun(world["coord"], keys, op, [(f"e{i}", 1) for i in range(5)], b"beacon-1")
    sends = [a for a in run_.start(0.0) if isinstance(a, b.Send)]
    honest, copier, third = q
    honest_commit = exs[honest].receive("coord", next(s.frame for s in sends if s.dst == honest))[0]
    assert isinstance(honest_commit, b.Send)
    digest = b.decode_frame(honest_commit.frame)
    body = pb.Commit().parse(digest.body)
    copied = seal(world[copier], Kind.COMMIT, pb.Commit("op-c", 0, copier, body.digest))
    actions = run_.receive(honest, honest_commit.frame, 0.1)
    actions += run_.receive(copier, bytes(copied), 0.1)
    third_commit = exs[third].receive("coord", next(s.frame for s in sends if s.dst == third))[0]
    assert isinstance(third_commit, b.Send)
    actions += run_.receive(third, third_commit.frame, 0.2)
    reveal_reqs = [a for a in actions if isinstance(a, b.Send)]
    assert {a.dst for a in reveal_reqs} == set(q)
    for a in reveal_reqs:
        if a.dst == copier:
            continue  # the copier has nothing it can open
        (r,) = exs[a.dst].receive("coord", a.frame)
        assert isinstance(r, b.Send)
        run_.receive(a.dst, r.frame, 0.3)
    run_.timer("op-c/reveal/0", 5.3)
    v = run_.verdict
    assert v is not None
    assert v.accepted
    assert [(e.kind, e.accused) for e in v.evidence] == [(b.EvidenceKind.COPIED_COMMIT, copier)]
    assert b.verify_verdict(v.frame, keys).evidence == v.evidence


def test_two_different_commits_from_one_executor_are_equivocation(world, keys, functions) -> None:
    op = b.sign_operation(world["client"], "op-q", "sha256", b"x")
    q = quorum_for("op-q", 5)
    run_ = b.QuorumRun(world["coord"], keys, op, [(f"e{i}", 1) for i in range(5)], b"beacon-1")
    run_.start(0.0)
    for i, d in enumerate((b"a" * 32, b"b" * 32)):
        env = seal(world[q[0]], Kind.COMMIT, pb.Commit("op-q", 0, q[0], d))
        run_.receive(q[0], bytes(env), 0.1 * i)
    run_.timer("op-q/commit/0", 5.0)
    run_.timer("op-q/reveal/0", 10.0)
    run_.timer("op-q/commit/1", 15.0)
    run_.timer("op-q/reveal/1", 20.0)
    run_.timer("op-q/commit/2", 25.0)
    run_.timer("op-q/reveal/2", 30.0)
    v = run_.verdict
    assert v is not None
    assert not v.accepted
    assert (b.EvidenceKind.EQUIVOCATION, q[0]) in {(e.kind, e.accused) for e in v.evidence}
    assert isinstance(run_.error, b.NoMajorityError)


def test_late_reveal_is_kept_as_evidence_while_a_retry_runs(world, keys, functions) -> None:
    op = b.sign_operation(world["client"], "op-l", "sha256", b"x")
    q0 = quorum_for("op-l", 5)
    exs = {e.signer.node_id: e for e in executors(world, keys, functions)}
    run_ = b.QuorumRun(world["coord"], keys, op, [(f"e{i}", 1) for i in range(5)], b"beacon-1")
    pending = [a for a in run_.start(0.0) if isinstance(a, b.Send)]
    commits = [exs[a.dst].receive("coord", a.frame)[0] for a in pending]
    reqs: list[b.Action] = []
    for a, c in zip(pending, commits, strict=True):
        assert isinstance(c, b.Send)
        reqs += run_.receive(a.dst, c.frame, 0.1)
    held = []
    for r in reqs:
        if isinstance(r, b.Send):
            (rev,) = exs[r.dst].receive("coord", r.frame)
            assert isinstance(rev, b.Send)
            held.append((r.dst, rev.frame))
    run_.receive(*held[0], 0.2)  # one on time; the other two miss the deadline
    run_.timer("op-l/reveal/0", 5.1)
    assert len(run_.attempts) == 2  # no majority yet: a retry on a larger quorum started
    assert len(run_.attempts[1].quorum) == 5
    run_.receive(*held[1], 5.5)
    run_.timer("op-l/commit/1", 10.0)
    run_.timer("op-l/reveal/1", 15.0)
    run_.timer("op-l/commit/2", 20.0)
    run_.timer("op-l/reveal/2", 25.0)
    v = run_.verdict
    assert v is not None
    got = {(e.kind, e.accused, e.attempt) for e in v.evidence}
    assert (b.EvidenceKind.LATE_REVEAL, held[1][0], 0) in got
    assert (b.EvidenceKind.MISSING_REVEAL, held[2][0], 0) in got
    assert q0[0] in {h[0] for h in held}
    assert b.verify_verdict(v.frame, keys) == v


def test_no_majority_retries_on_larger_quorums_then_fails_listing_reveals(world, keys, functions) -> None:
    bad = {f"e{i}": WrongResult for i in range(5)}
    v = run(world, keys, executors(world, keys, functions, bad=bad), op_id="op-n")
    assert not v.accepted
    assert v.result is None
    assert v.attempts == 3
    assert len(v.revealed) == 5  # five distinct wrong answers
    assert b.verify_verdict(v.frame, keys) == v


def test_no_majority_error_message_lists_what_was_revealed(world, keys, functions) -> None:
    op = b.sign_operation(world["client"], "op-e", "sha256", b"x")
    exs = executors(
        world, keys, functions, n=3, bad={"e0": WrongResult, "e1": WrongResult, "e2": WrongResult}
    )
    run_ = b.QuorumRun(
        world["coord"], keys, op, [(f"e{i}", 1) for i in range(3)], b"b", b.QuorumConfig(max_attempts=1)
    )
    inbox = [a for a in run_.start(0.0) if isinstance(a, b.Send)]
    by = {e.signer.node_id: e for e in exs}
    for _ in range(100):
        if not inbox:
            break
        a = inbox.pop(0)
        if a.dst == "coord":
            continue
        for out in by[a.dst].receive("coord", a.frame):
            assert isinstance(out, b.Send)
            inbox += [x for x in run_.receive(a.dst, out.frame, 0.1) if isinstance(x, b.Send)]
    assert run_.error is not None
    msg = str(run_.error)
    assert "op-e" in msg
    assert "e0" in msg
    assert "e1" in msg
    assert "e2" in msg
    assert "strict majority" in msg


def test_colluding_majority_wins_a_small_quorum_under_strict_majority(world, keys, functions) -> None:
    """Stated limit: commit-reveal defeats copying, not a colluding majority of the quorum."""
    q = quorum_for("op-1", 5)
    v = run(world, keys, executors(world, keys, functions, bad={q[0]: AgreedWrong, q[1]: AgreedWrong}))
    assert v.accepted
    assert v.result == b"colluded"


def test_two_f_plus_one_rule_needs_more_votes(world, keys, functions) -> None:
    cfg = b.QuorumConfig(base_quorum=4, rule=b.MajorityRule.TWO_F_PLUS_ONE, max_attempts=1)
    q = b.select_quorum(b"beacon-1", "op-1", 0, [(f"e{i}", 1) for i in range(5)], 4)
    v = run(
        world, keys, executors(world, keys, functions, bad={q[0]: WrongResult, q[1]: WrongResult}), config=cfg
    )
    assert not v.accepted  # 2 of 4 agree, 2f+1 = 3 needed
    v2 = run(world, keys, executors(world, keys, functions, bad={q[0]: WrongResult}), config=cfg)
    assert v2.accepted


def test_tampered_verdict_is_rejected(world, keys, functions) -> None:
    q = quorum_for("op-1", 5)
    v = run(world, keys, executors(world, keys, functions, bad={q[0]: WrongResult}))
    env = b.decode_frame(v.frame)
    msg = pb.Verdict().parse(env.body)
    msg.dissenting = []
    msg.agreeing = sorted(q)
    forged = seal(world["coord"], Kind.VERDICT, msg)  # even re-signed by the coordinator itself
    with pytest.raises(b.VerificationError, match="agreeing"):
        b.verify_verdict(bytes(forged), keys)
    msg2 = pb.Verdict().parse(env.body)
    msg2.attempts[0].quorum = ["e0", "e1", "e2"] if sorted(q) != ["e0", "e1", "e2"] else ["e2", "e3", "e4"]
    with pytest.raises(b.VerificationError, match="quorum"):
        b.verify_verdict(bytes(seal(world["coord"], Kind.VERDICT, msg2)), keys)
    flipped = bytearray(v.frame)
    flipped[-1] ^= 1
    with pytest.raises(b.VerificationError):
        b.verify_verdict(bytes(flipped), keys)


def test_quorum_selection_is_deterministic_and_weighted() -> None:
    eligible = [(f"n{i}", 1 if i else 1000) for i in range(10)]
    a = b.select_quorum(b"beacon", "op", 0, eligible, 3)
    assert a == b.select_quorum(b"beacon", "op", 0, list(reversed(eligible)), 3)
    assert len(set(a)) == 3
    firsts = [b.select_quorum(b"beacon", f"op{i}", 0, eligible, 1)[0] for i in range(200)]
    assert firsts.count("n0") > 150  # weight 1000 of 1009
    assert b.select_quorum(b"beacon", "op", 0, [("x", 0), ("y", 5)], 2) == ["y"]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(b.ConfigError, match="base_quorum"):
        b.QuorumConfig(base_quorum=0)
    with pytest.raises(b.ConfigError, match="commit_timeout"):
        b.QuorumConfig(commit_timeout=0)


def test_unknown_function_gets_no_commit(world, keys, functions) -> None:
    ex = b.Executor(world["e0"], keys, functions)
    op = b.sign_operation(world["client"], "op-u", "nope", b"")
    req = seal(world["coord"], Kind.EXECUTE_REQUEST, pb.ExecuteRequest(op, 0))
    assert ex.receive("coord", bytes(req)) == []
    with pytest.raises(b.UnknownFunctionError, match="nope"):
        ex.compute("nope", b"")
