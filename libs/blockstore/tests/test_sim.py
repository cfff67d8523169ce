"""The replication protocol under meshnet.sim: crashes, restarts and partitions over many seeds.

Fault model: crashes (with restart) and partitions of one storage node at a time, the next fault
only once every replica is healthy again (a rebuilding replica has not recovered yet), i.e. at most
``replicas - min_replicas`` = 1 failed replica at any moment.

Invariant (checked after every simulator step): every acknowledged write is held, at its
generation or a newer one, by at least ``min_replicas`` storage nodes' durable storage. Hence an
acknowledged write survives the permanent loss of any ``replicas - min_replicas`` nodes. At the
end of each run (faults healed) all replicas converge and hold at least the last acknowledged
generation of every block.
"""

from __future__ import annotations

import random

import pytest

from blockstore import ReplicaHealth, WritePolicy
from blockstore._protocol import Acked, Action, FrontEndCore, Refused, Send, SetTimer, StorageCore
from meshnet.sim import LinkProfile, NodeContext, Simulation, run_seeds, seed_count

pytestmark = pytest.mark.sim
STORAGE = ("s0", "s1", "s2")
BLOCKS = 6


def perform(ctx: NodeContext, actions: list[Action], sink: list[Action] | None = None) -> None:
    for action in actions:
        if isinstance(action, Send):
            ctx.send(action.dst, action.payload)
        elif isinstance(action, SetTimer):
            ctx.set_timer(action.delay, action.tag)
        elif sink is not None:
            sink.append(action)


class StorageNode:
    def __init__(self) -> None:
        self.core: StorageCore | None = None

    def start(self, ctx: NodeContext) -> None:
        self.core = StorageCore(ctx.storage)

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        assert self.core is not None
        perform(ctx, self.core.receive(src, payload))

    def timer(self, ctx: NodeContext, tag: str) -> None:
        pass


class FrontEnd:
    """Adapter: a client issuing writes (at most 4 outstanding) through the front-end core."""

    def __init__(self, policy: WritePolicy) -> None:
        self.core = FrontEndCore(STORAGE, BLOCKS, 3, policy, timeout=0.05, probe_interval=0.1)
        self.outcomes: list[Action] = []
        self.outstanding = 0
        self.writing = True
        self.counter = 0
        self.last_acked: dict[int, int] = {}  # block -> newest acknowledged generation

    def start(self, ctx: NodeContext) -> None:
        perform(ctx, self.core.start())
        ctx.set_timer(0.002, "client")

    def _apply(self, ctx: NodeContext, actions: list[Action]) -> None:
        before = len(self.outcomes)
        perform(ctx, actions, self.outcomes)
        self.outstanding -= len(self.outcomes) - before
        for outcome in self.outcomes[before:]:
            if isinstance(outcome, Acked):
                self.last_acked[outcome.block] = max(
                    self.last_acked.get(outcome.block, 0), outcome.generation
                )

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        self._apply(ctx, self.core.receive(src, payload))

    def timer(self, ctx: NodeContext, tag: str) -> None:
        if tag == "client":
            if self.writing:
                ctx.set_timer(ctx.rng.uniform(0.001, 0.006), "client")
                if self.outstanding < 4:
                    self.counter += 1
                    self.outstanding += 1
                    _wid, actions = self.core.client_write(ctx.rng.randrange(BLOCKS), self.counter)
                    self._apply(ctx, actions)
            return
        self._apply(ctx, self.core.timer(tag))

    def acked(self) -> list[Acked]:
        return [a for a in self.outcomes if isinstance(a, Acked)]


def scenario(seed: int) -> None:
    policy = WritePolicy(ack="quorum" if seed % 2 else "all", min_replicas=2)
    sim = Simulation(seed, LinkProfile(delay=(0.0005, 0.008), fifo=True))
    for node in STORAGE:
        sim.add_node(node, StorageNode)
    sim.add_node("fe", lambda: FrontEnd(policy))
    fe = sim.node("fe", FrontEnd)

    def acked_writes_are_on_min_replicas(s: Simulation) -> None:
        # Holding the newest acknowledged generation of a block implies holding every older one.
        for block, generation in fe.last_acked.items():
            holders = sum(s.storage(n).get("blocks", {}).get(block, (0, 0))[0] >= generation for n in STORAGE)
            assert holders >= policy.min_replicas, (
                f"block {block} generation {generation} (acknowledged) held by only {holders} nodes "
                f"(min_replicas={policy.min_replicas})"
            )

    sim.add_invariant(acked_writes_are_on_min_replicas)
    rng = random.Random(seed)  # the fault schedule, derived from the seed

    def all_healthy() -> bool:
        return set(fe.core.state.health.values()) == {ReplicaHealth.HEALTHY}

    sim.run_for(0.05)
    for _fault in range(rng.randint(2, 5)):
        # At most replicas - min_replicas = 1 replica is failed at a time, and a replica that is
        # still rebuilding has not recovered yet: the next fault waits for a fully healthy set.
        sim.run_until(all_healthy, timeout=10.0)
        sim.run_for(rng.uniform(0.0, 0.2))
        victim = rng.choice(STORAGE)
        if rng.random() < 0.5:
            sim.crash(victim)
            sim.run_for(rng.uniform(0.02, 0.4))
            sim.restart(victim)
        else:
            sim.partition({victim}, {"fe", *STORAGE} - {victim})
            sim.run_for(rng.uniform(0.02, 0.4))
            sim.heal()
    sim.run_for(0.1)
    fe.writing = False
    sim.run_until(all_healthy, timeout=10.0)
    sim.run_for(0.5)
    assert fe.acked(), "no write was acknowledged at all"
    for block, generation in fe.last_acked.items():
        copies = {sim.storage(n)["blocks"].get(block) for n in fe.core.placement(block)}
        assert len(copies) == 1, f"block {block}: replicas diverge {copies}"
        (copy,) = copies
        assert copy is not None
        assert copy[0] >= generation


def test_acknowledged_writes_survive_crashes_and_partitions() -> None:
    assert run_seeds(scenario, range(seed_count(100))) >= 1


def test_refused_writes_are_reported_when_too_few_replicas_live() -> None:
    fe = FrontEndCore(STORAGE, BLOCKS, 3, WritePolicy(min_replicas=2))
    fe.state.mark_down("s0")
    fe.state.mark_down("s1")
    _wid, actions = fe.client_write(0, 1)
    assert [type(a) for a in actions] == [Refused]
