"""Commit-reveal under meshnet.sim: random delays and reordering, Byzantine executors (wrong
results, withheld reveals, reveals that do not open, copied commits), many seeds.

Invariants after every step: every verdict re-verifies from its signed messages; an accepted
result is the true one; no honest executor is ever named as dissenting or accused of a provable
fault. At the end every operation has a verdict (liveness under bounded delays).
"""

from __future__ import annotations

import hashlib

import pytest

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._wire import Kind, seal
from meshnet.sim import LinkProfile, NodeContext, Simulation, run_seeds, seed_count

pytestmark = pytest.mark.sim

N_SEEDS = seed_count(40)
OPS = 6
FUNCTIONS: dict[str, b.DeterministicFunction] = {"sha256": lambda d: hashlib.sha256(d).digest()}


def _apply(ctx: NodeContext, actions: list[b.Action]) -> None:
    for a in actions:
        if isinstance(a, b.Send):
            ctx.send(a.dst, a.frame)
        elif isinstance(a, b.SetTimer):
            ctx.set_timer(a.delay, a.tag)
        else:
            ctx.cancel_timer(a.tag)


class Snooping(b.Executor):
    """Honest, but its commits leak to the adversary (who sees the whole network)."""

    snoop: dict[tuple[str, int], bytes]

    def make_commit(self, op: pb.Operation, attempt: int, result: bytes, nonce: bytes) -> pb.Signed:
        env = super().make_commit(op, attempt, result, nonce)
        self.snoop.setdefault((op.op_id, attempt), pb.Commit().parse(env.body).digest)
        return env


class WrongResult(Snooping):
    def compute(self, function: str, data: bytes) -> bytes:
        return b"wrong by " + self.signer.node_id.encode()


class Withholder(Snooping):
    def make_reveal(self, op_id: str, attempt: int, result: bytes, nonce: bytes) -> pb.Signed | None:
        return None


class Mismatcher(Snooping):
    def make_reveal(self, op_id: str, attempt: int, result: bytes, nonce: bytes) -> pb.Signed | None:
        return super().make_reveal(op_id, attempt, result, bytes(32))


class Copier(Snooping):
    """Lazy: commits whatever digest an honest executor already sent, never computes."""

    def make_commit(self, op: pb.Operation, attempt: int, result: bytes, nonce: bytes) -> pb.Signed:
        copied = self.snoop.get((op.op_id, attempt))
        if copied is None:
            return super().make_commit(op, attempt, result, nonce)
        return seal(self.signer, Kind.COMMIT, pb.Commit(op.op_id, attempt, self.signer.node_id, copied))


class ExecutorNode:
    def __init__(self, executor: b.Executor) -> None:
        self.executor = executor

    def start(self, ctx: NodeContext) -> None:
        pass

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        _apply(ctx, self.executor.receive(src, payload))

    def timer(self, ctx: NodeContext, tag: str) -> None:
        pass


class CoordinatorNode:
    def __init__(
        self, signer: b.Ed25519Signer, client: b.Ed25519Signer, keys: dict[str, bytes], eligible: list[str]
    ):
        self.signer, self.client, self.keys, self.eligible = signer, client, keys, eligible
        self.verdicts: list[b.Verdict] = []
        self.run: b.QuorumRun | None = None

    def _next(self, ctx: NodeContext) -> None:
        n = len(self.verdicts)
        if n >= OPS:
            return
        op = b.sign_operation(self.client, f"op-{n}", "sha256", b"input %d" % n)
        self.run = b.QuorumRun(self.signer, self.keys, op, [(e, 1) for e in self.eligible], b"beacon")
        _apply(ctx, self.run.start(ctx.now()))

    def _after(self, ctx: NodeContext, actions: list[b.Action]) -> None:
        _apply(ctx, actions)
        if self.run is not None and self.run.verdict is not None:
            self.verdicts.append(self.run.verdict)
            self.run = None
            self._next(ctx)

    def start(self, ctx: NodeContext) -> None:
        self._next(ctx)

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        if self.run is not None:
            self._after(ctx, self.run.receive(src, payload, ctx.now()))

    def timer(self, ctx: NodeContext, tag: str) -> None:
        if self.run is not None:
            self._after(ctx, self.run.timer(tag, ctx.now()))


BYZANTINE = [WrongResult, Withholder, Mismatcher, Copier]


def test_commit_reveal_with_byzantine_executors(world, keys) -> None:
    seen: set[b.EvidenceKind] = set()

    def scenario(seed: int) -> None:
        sim = Simulation(seed, LinkProfile(delay=(0.001, 1.0)))
        names = [f"e{i}" for i in range(7)]
        faulty = {names[seed % 7]: WrongResult, names[(seed // 7 + 1 + seed) % 7]: BYZANTINE[seed % 4]}
        snoop: dict[tuple[str, int], bytes] = {}
        for name in names:
            cls = faulty.get(name, Snooping)

            def factory(cls: type[Snooping] = cls, name: str = name) -> ExecutorNode:
                ex = cls(world[name], keys, FUNCTIONS)
                ex.snoop = snoop
                return ExecutorNode(ex)

            sim.add_node(name, factory)
        sim.add_node("coord", lambda: CoordinatorNode(world["coord"], world["client"], keys, names))
        checked: set[str] = set()

        def invariant(_sim: Simulation) -> None:
            for v in sim.node("coord", CoordinatorNode).verdicts:
                if v.op_id in checked:
                    continue
                checked.add(v.op_id)
                assert b.verify_verdict(v.frame, keys) == v
                if v.accepted:
                    assert v.result == hashlib.sha256(v.input).digest(), f"{v.op_id} accepted a wrong result"
                honest_accused = {e.accused for e in v.evidence if e.kind.provable} - set(faulty)
                assert not honest_accused, f"honest executors accused: {honest_accused}"
                assert not set(v.dissenting) - set(faulty), f"honest executors dissent: {v.dissenting}"
                assert not set(v.agreeing) & {n for n, c in faulty.items() if c is WrongResult}

        sim.add_invariant(invariant, "verdicts")
        sim.run_until(lambda: len(sim.node("coord", CoordinatorNode).verdicts) == OPS, timeout=600)
        verdicts = sim.node("coord", CoordinatorNode).verdicts
        assert sum(v.accepted for v in verdicts) == OPS  # 2 of 7 faulty never block a retry's majority
        seen.update(e.kind for v in verdicts for e in v.evidence)

    if run_seeds(scenario, range(N_SEEDS)) >= 8:  # the Byzantine behaviours really happened
        assert {
            b.EvidenceKind.MISSING_REVEAL,
            b.EvidenceKind.REVEAL_MISMATCH,
            b.EvidenceKind.COPIED_COMMIT,
        } <= seen
