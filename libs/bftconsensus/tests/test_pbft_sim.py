"""PBFT under meshnet.sim: many seeds, Byzantine replicas, crashes, partitions, random delays.

Invariants checked after every simulator step:
* safety: no two honest replicas execute different batches at the same sequence number;
* validity: every executed operation was submitted by a client (same client, timestamp, bytes);
and at the end of each run, liveness: with at most f faulty replicas and the network healed,
every client's operations complete with the correct result.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

import bftconsensus as b
from bftconsensus import _messages as pb
from bftconsensus._wire import Kind, decode_frame, seal
from meshnet.sim import LinkProfile, NodeContext, Simulation, run_seeds, seed_count

pytestmark = pytest.mark.sim

N_SEEDS = seed_count(40)


def _apply(ctx: NodeContext, actions: list[b.Action]) -> None:
    for a in actions:
        if isinstance(a, b.Send):
            ctx.send(a.dst, a.frame)
        elif isinstance(a, b.SetTimer):
            ctx.set_timer(a.delay, a.tag)
        else:
            ctx.cancel_timer(a.tag)


class ReplicaNode:
    def __init__(self, replica: b.Replica) -> None:
        self.replica = replica

    def start(self, ctx: NodeContext) -> None:
        _apply(ctx, self.replica.start())

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        _apply(ctx, self.replica.receive(src, payload))

    def timer(self, ctx: NodeContext, tag: str) -> None:
        _apply(ctx, self.replica.timer(tag))


class ClientNode:
    """A client; with ``mac_keys`` it first gives each replica its MAC key (backups then vouch on
    tags), without, backups vouch on signatures: the worlds mix both."""

    def __init__(
        self,
        client: b.Client,
        ops: list[bytes],
        submitted: set[tuple[str, int, bytes]],
        *,
        mac_keys: bool = True,
    ) -> None:
        self.client = client
        self.ops = list(ops)
        self.submitted = submitted
        self.results: list[bytes] = []
        self.mac_keys = mac_keys

    def _next(self, ctx: NodeContext) -> None:
        if not self.client.busy and len(self.results) < len(self.ops):
            op = self.ops[len(self.results)]
            actions = self.client.submit(op)
            self.submitted.add((self.client.signer.node_id, self.client.timestamp, op))
            _apply(ctx, actions)

    def start(self, ctx: NodeContext) -> None:
        if self.mac_keys:
            me = self.client.signer.node_id
            for replica in self.client.replicas:
                ctx.send(replica, self.client.link_frame(me, replica))
        self._next(ctx)

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        was = self.client.busy
        _apply(ctx, self.client.receive(src, payload))
        if was and not self.client.busy:
            assert self.client.result is not None
            self.results.append(self.client.result)
            self._next(ctx)

    def timer(self, ctx: NodeContext, tag: str) -> None:
        _apply(ctx, self.client.timer(tag))


class EquivocatingPrimary(b.Replica):
    """Signs two different batches for the same slot and sends each to half the backups."""

    def _issue_pre_prepare(self, seq: int, batch: list[pb.Signed]) -> list[b.Action]:
        others = [m for m in self.members if m != self.me]
        out: list[b.Action] = []
        for i, variant in enumerate((batch, list(reversed(batch))[:1] if len(batch) > 1 else [])):
            from bftconsensus._certs import batch_digest

            env = seal(
                self.signer, Kind.PRE_PREPARE, pb.PrePrepare(self.view, seq, batch_digest(variant), variant)
            )
            out += [b.Send(m, bytes(env)) for m in others[i::2]]
        return out


class ForgingPrimary(b.Replica):
    """Slips an operation the client never sent into every batch (it cannot sign as the client)."""

    def _issue_pre_prepare(self, seq: int, batch: list[pb.Signed]) -> list[b.Action]:
        forged = seal(self.signer, Kind.CLIENT_REQUEST, pb.ClientRequest("c0", 10**9, b"put stolen yes"))
        return super()._issue_pre_prepare(seq, [*batch, forged])


class ForgingClient(b.Client):
    """Signs every request badly and gives a valid MAC tag only to the replicas at the positions
    in ``valid_tags``: a primary takes its requests from its own link unchecked, and backups
    without a valid tag or their own copy cannot vouch for them (PBFT's exposure to such clients)."""

    valid_tags: frozenset[int] = frozenset()

    def submit(self, operation: bytes) -> list[b.Action]:
        actions = super().submit(operation)
        assert self._frame is not None
        env = decode_frame(self._frame)
        macs = bytearray(env.macs)
        for i in range(len(self.replicas)):
            if i not in self.valid_tags:
                macs[16 * i : 16 * i + 16] = bytes(16)
        self._frame = bytes(pb.Signed(env.kind, env.body, env.signer, bytes(64), bytes(macs)))
        return [b.Send(a.dst, self._frame) if isinstance(a, b.Send) else a for a in actions]


class LyingReplica(b.Replica):
    def reply_result(self, result: bytes) -> bytes:
        return b"lie"


class World:
    """n replicas, some clients, invariants wired in."""

    def __init__(
        self,
        seed: int,
        signers: dict[str, b.Ed25519Signer],
        keys: dict[str, bytes],
        *,
        n: int = 4,
        clients: int = 2,
        ops: int = 6,
        faulty: dict[str, type[b.Replica]] | None = None,
        interval: int = 4,
        link: LinkProfile | None = None,
        joining: tuple[str, ...] = (),
        admin_ops: tuple[bytes, ...] = (),
        options: dict[str, object] | None = None,
        client_cls: dict[str, Callable[..., b.Client]] | None = None,
    ) -> None:
        self.sim = Simulation(seed, link or LinkProfile(delay=(0.001, 0.02)))
        self.names = [f"e{i}" for i in range(n)]
        self.faulty = set(faulty or {})
        self.config = b.ReplicaConfig(
            tuple(self.names),
            checkpoint_interval=interval,
            watermark_window=2 * interval,
            batch_size=4,
            view_change_timeout=0.5,
            state_retry=0.3,
            admins=frozenset({"c0"}),
            **(options or {}),  # type: ignore[arg-type]
        )
        self.submitted: set[tuple[str, int, bytes]] = set()
        self.global_log: dict[int, bytes] = {}
        self.validated: dict[int, int] = {}
        for name in self.names:
            cls = (faulty or {}).get(name, b.Replica)
            self.sim.add_node(name, self._factory(cls, signers[name], keys))
        for name in joining:  # started with the membership it will belong to
            cfg = attrs.evolve(self.config, replicas=(*self.names, name))
            self.sim.add_node(
                name, lambda s=signers[name], c=cfg: ReplicaNode(b.Replica(s, keys, c, b.KeyValueStore()))
            )
        self.joining = joining
        self.client_names = [f"c{i}" for i in range(clients)]
        for i, cname in enumerate(self.client_names):
            ops_list = [f"put k{i}-{j} v{j}".encode() for j in range(ops - 1)] + [f"get k{i}-0".encode()]
            if i == 0:
                ops_list = [*admin_ops, *ops_list]
            kind = (client_cls or {}).get(cname, b.Client)
            self.sim.add_node(
                cname,
                lambda s=signers[cname], o=ops_list, k=i % 2 == 0, cls=kind: ClientNode(
                    cls(s, keys, self.names, retransmit=1.0), o, self.submitted, mac_keys=k
                ),
            )
        self.sim.add_invariant(self.check_safety, "safety")
        self.sim.add_invariant(self.check_validity, "validity")

    def _factory(
        self, cls: type[b.Replica], signer: b.Ed25519Signer, keys: dict[str, bytes]
    ) -> Callable[[], ReplicaNode]:
        return lambda: ReplicaNode(cls(signer, keys, self.config, b.KeyValueStore()))

    def honest(self) -> list[b.Replica]:
        return [
            self.sim.node(n, ReplicaNode).replica
            for n in self.names
            if n not in self.faulty and self.sim.is_up(n)
        ]

    def check_safety(self, _sim: Simulation) -> None:
        for r in self.honest():
            for seq, digest in r.executed.items():
                seen = self.global_log.setdefault(seq, digest)
                assert seen == digest, f"replica {r.me} executed a different batch at seq {seq}"

    def check_validity(self, _sim: Simulation) -> None:
        for r in self.honest():
            done = self.validated.get(id(r), 0)
            for _, client, ts, op in r.executed_requests[done:]:
                assert (client, ts, op) in self.submitted, f"{r.me} executed unsubmitted {(client, ts)}"
            self.validated[id(r)] = len(r.executed_requests)

    def clients(self) -> list[ClientNode]:
        return [self.sim.node(c, ClientNode) for c in self.client_names]

    def all_done(self) -> bool:
        return all(len(c.results) == len(c.ops) for c in self.clients())

    def finish(self, timeout: float = 120.0) -> None:
        self.sim.run_until(self.all_done, timeout=timeout)
        for i, c in enumerate(self.clients()):
            plain = [r for r, op in zip(c.results, c.ops, strict=True) if not op.startswith(b"\x00")]
            assert plain[:-1] == [b"ok"] * (len(plain) - 1)
            assert plain[-1] == b"v0", f"client {i} read {plain[-1]!r}"


@pytest.fixture(scope="module")
def signers() -> dict[str, b.Ed25519Signer]:
    names = [f"e{i}" for i in range(7)] + [f"c{i}" for i in range(3)]
    return {n: b.Ed25519Signer.from_seed(n.encode(), n) for n in names}


@pytest.fixture(scope="module")
def pkeys(signers: dict[str, b.Ed25519Signer]) -> dict[str, bytes]:
    return {n: s.public_key for n, s in signers.items()}


def test_normal_case_with_checkpoints_and_garbage_collection(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, ops=12)
        w.finish()
        for r in w.honest():
            assert r.stable_seq > 0  # checkpoints became stable
            assert all(seq > r.stable_seq for seq in r.log)  # and the log below them is gone

    run_seeds(scenario, range(N_SEEDS))


def test_signed_replies_and_commits_from_every_replica_work_the_same(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        options = {"sign_all_messages": True, "reply_all": True}
        w = World(seed, signers, pkeys, n=7, faulty={"e6": LyingReplica}, ops=4, options=options)
        w.finish()  # results right, safety and validity invariants held at every step

    run_seeds(scenario, range(max(1, N_SEEDS // 4)))


def test_seven_replicas_tolerate_two_liars(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, n=7, faulty={"e5": LyingReplica, "e6": LyingReplica}, ops=4)
        w.finish()

    run_seeds(scenario, range(max(1, N_SEEDS // 4)))


def test_crashed_primary_is_replaced_by_a_view_change(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, faulty={"e0": b.Replica}, ops=8)
        w.sim.after(w.sim.now + 0.05 + (seed % 7) * 0.03, lambda: w.sim.crash("e0"))
        w.finish()
        assert all(r.view >= 1 for r in w.honest())

    run_seeds(scenario, range(N_SEEDS))


def test_equivocating_primary_cannot_split_honest_replicas(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, faulty={"e0": EquivocatingPrimary}, ops=5)
        w.finish()

    run_seeds(scenario, range(N_SEEDS))


def test_partitioned_replica_catches_up_by_state_transfer(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, ops=14)
        lagger = w.names[1 + seed % 3]
        w.sim.partition([lagger], [n for n in w.names + w.client_names if n != lagger])
        w.sim.run_until(lambda: min(len(c.results) for c in w.clients()) >= 8, timeout=120)
        w.sim.heal()
        w.finish()
        target = max(r.last_executed for r in w.honest())
        w.sim.run_until(
            lambda: w.sim.node(lagger, ReplicaNode).replica.last_executed >= target - 4, timeout=60
        )
        assert w.sim.node(lagger, ReplicaNode).replica.stable_seq > 0

    run_seeds(scenario, range(N_SEEDS))


def test_crash_and_restart_with_lost_state_recovers(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, faulty={"e3": b.Replica}, ops=10)
        w.sim.after(0.1, lambda: w.sim.crash("e3", restart_after=1.0))
        w.finish()

    run_seeds(scenario, range(max(1, N_SEEDS // 2)))


def test_membership_change_adds_a_replica_at_a_checkpoint_boundary(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        add = b.reconfigure_operation("add", "e4")
        w = World(seed, signers, pkeys, ops=16, joining=("e4",), admin_ops=(add,))
        w.finish()
        first = w.clients()[0].results[0]
        assert first.startswith(b"reconfiguration scheduled at "), first
        boundary = int(first.rsplit(b" ", 1)[1])
        everyone = [w.sim.node(n, ReplicaNode).replica for n in [*w.names, "e4"]]
        w.sim.run_until(lambda: all(r.last_executed > boundary for r in everyone), timeout=60)
        assert all(r.members == (*w.names, "e4") for r in everyone)
        assert w.sim.node("e4", ReplicaNode).replica.stable_seq >= boundary

    run_seeds(scenario, range(max(1, N_SEEDS // 4)))


def test_membership_change_removes_a_replica(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        remove = b.reconfigure_operation("remove", "e3")
        w = World(seed, signers, pkeys, ops=14, admin_ops=(remove,))
        w.finish()
        boundary = int(w.clients()[0].results[0].rsplit(b" ", 1)[1])
        rest = [w.sim.node(n, ReplicaNode).replica for n in w.names[:3]]
        w.sim.run_until(lambda: all(r.last_executed >= boundary for r in rest), timeout=60)
        assert all(r.members == tuple(w.names[:3]) for r in rest)

    run_seeds(scenario, range(max(1, N_SEEDS // 4)))


def test_reconfiguration_from_a_non_admin_is_refused(signers, pkeys) -> None:
    r = b.Replica(signers["e0"], pkeys, b.ReplicaConfig(("e0",), admins=frozenset({"c0"})), b.KeyValueStore())
    client = b.Client(signers["c1"], pkeys, ["e0"])
    (send, *_) = client.submit(b.reconfigure_operation("add", "e1"))
    assert isinstance(send, b.Send)
    for a in r.receive("c1", send.frame):
        if isinstance(a, b.Send):
            client.receive("e0", a.frame)
    assert client.result == b"error: client is not an administrator"
    assert r.members == ("e0",)


def test_lossy_duplicating_links_still_make_progress(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        link = LinkProfile(delay=(0.001, 0.02), loss=0.02, duplicate=0.05)
        w = World(seed, signers, pkeys, ops=8, link=link)
        w.finish(timeout=300)

    run_seeds(scenario, range(max(1, N_SEEDS // 2)))


def test_primary_cannot_order_operations_no_client_signed(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, faulty={"e0": ForgingPrimary}, ops=4)
        w.finish()
        assert all(r.view >= 1 for r in w.honest())  # the forging primary was replaced
        assert all(b"stolen" not in r.app.snapshot() for r in w.honest())

    run_seeds(scenario, range(max(1, N_SEEDS // 4)))


def test_partitioned_primary_is_replaced_and_rejoins_after_heal(signers, pkeys) -> None:
    def scenario(seed: int) -> None:
        w = World(seed, signers, pkeys, ops=12)
        w.sim.after(0.05 + (seed % 5) * 0.02, lambda: w.sim.isolate("e0"))
        w.sim.run_until(lambda: min(len(c.results) for c in w.clients()) >= 6, timeout=120)
        w.sim.heal()
        w.finish()
        old = w.sim.node("e0", ReplicaNode).replica
        others = [r for r in w.honest() if r.me != "e0"]
        w.sim.run_until(lambda: old.view == max(r.view for r in others), timeout=60)
        assert old.view >= 1

    run_seeds(scenario, range(max(1, N_SEEDS // 2)))


def test_a_client_that_forges_signatures_and_tags_stalls_a_few_views_at_most(signers, pkeys) -> None:
    """A client signs badly and gives the first primary and at most one backup a valid tag: the
    primary proposes its request (taken from its link unchecked), too few backups can vouch, the
    slot stalls, and every backup that refused marks the client a suspect. Once the primary is
    one of those, the client's requests are dropped for their signature and the others complete."""

    def scenario(seed: int) -> None:
        valid = frozenset({0, 1 + seed % 3} if seed % 2 else {0})
        forger = type("Forger", (ForgingClient,), {"valid_tags": valid})
        w = World(seed, signers, pkeys, clients=3, ops=4, client_cls={"c2": forger})
        honest_clients = w.clients()[:2]
        w.sim.run_until(lambda: all(len(c.results) == len(c.ops) for c in honest_clients), timeout=120)
        replicas = w.honest()
        assert max(r.view for r in replicas) <= 3, [r.view for r in replicas]  # 2f+1 views, f = 1
        for r in replicas:
            if r.members.index(r.me) not in valid:  # refused the first batch: a suspect there
                assert "c2" in r.suspects, r.me

    run_seeds(scenario, range(max(1, N_SEEDS // 2)))
