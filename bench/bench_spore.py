"""spore benchmarks: the Latent Spore in the simulator against SWIM's and memberlist's published
numbers, and on loopback against the `swim-protocol` package (a Python SWIM), same scenario.

Simulator (meshnet.sim, N = 16, 64, 256; 1000 with MYCELIUM_BENCH_SLOW=1, ~7 min per run on the
shared 2-core machine, too long for the default set): time and rounds for a
join to reach every node, time for a crash to be declared dead by every node, false deaths with
10% loss and with 10% of nodes paused, gossip bytes per node per second.
Loopback: N processes' worth of nodes in one event loop each side; ours over meshnet mutual TLS,
swim-protocol over its signed UDP; join convergence and failure detection wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import random
import time

import anyio
from harness import Comparison, Trial

import meshnet
import spore
from meshnet.sim import LinkProfile, Simulation

TRUST = spore.NetworkTrust("bench-net")
CFG = spore.GossipConfig()
SIZES = [16, 64, 256] + ([1000] if os.environ.get("MYCELIUM_BENCH_SLOW") else [])


# ---------------------------------------------------------------- simulator
def _wait(sim: Simulation, cond: object, timeout: float, step: float = 0.1) -> None:
    deadline = sim.now + timeout
    while not cond():  # type: ignore[operator]
        if sim.now >= deadline:
            raise TimeoutError(f"not reached within {timeout} virtual seconds")
        sim.run_for(step)


@functools.cache
def sim_run(n: int, seed: int) -> dict[str, float]:
    """One simulated run: N-1 nodes converge, node N joins, then a node crashes."""
    signers = [spore.Ed25519Signer.from_seed(f"b{n}-{i}".encode()) for i in range(n)]
    ids = [spore.default_node_id(s.public_key) for s in signers]
    sim = Simulation(seed=seed, default_link=LinkProfile(delay=(0.001, 0.010)))
    for i, s in enumerate(signers[:-1]):
        sim.add_node(ids[i], lambda s=s, c=(ids[0],) if i else (): spore.LatentSimNode(s, TRUST, contacts=c))

    def core(node: str) -> spore.LatentSpore | None:
        return sim.node(node, spore.LatentSimNode).core

    def sees(target: str, state: spore.MemberState, among: list[str]) -> bool:
        return all((c := core(x)) is not None and c.state_of(target) is state for x in among if x != target)

    def converged() -> bool:
        # cluster_size() is O(1): the O(N) alive() only runs on nodes that may be converged.
        return all(
            (c := core(x)) is not None and c.cluster_size() >= n - 1 and len(c.alive()) == n - 2
            for x in ids[:-1]
        )

    _wait(sim, converged, 120.0, 0.5)
    joined_at = sim.now
    sim.add_node(ids[-1], lambda: spore.LatentSimNode(signers[-1], TRUST, contacts=(ids[0],)))
    _wait(sim, lambda: sees(ids[-1], spore.MemberState.ALIVE, ids), 60.0, 0.02)
    join_time = sim.now - joined_at
    # Steady state: skip the join flurry, then average over 60 s (two push/pull periods at N <= 32).
    sim.run_for(30.0)
    sent0 = sum(c.stats.bytes_sent for x in ids if (c := core(x)) is not None)
    t0 = sim.now
    sim.run_for(60.0)
    steady = (sum(c.stats.bytes_sent for x in ids if (c := core(x)) is not None) - sent0) / n / (sim.now - t0)
    victim = ids[n // 2]
    sim.crash(victim)
    crashed_at = sim.now
    _wait(sim, lambda: sees(victim, spore.MemberState.DEAD, [x for x in ids if x != victim]), 300.0, 0.1)
    return {
        "join_s": join_time,
        "join_rounds": join_time / CFG.gossip_interval,
        "detect_s": sim.now - crashed_at,
        "bytes_per_node_s": steady,
    }


@functools.cache
def sim_false_deaths(kind: str, seed: int) -> float:
    n = 32
    signers = [spore.Ed25519Signer.from_seed(f"fp-{i}".encode()) for i in range(n)]
    ids = [spore.default_node_id(s.public_key) for s in signers]
    sim = Simulation(seed=seed, default_link=LinkProfile(delay=(0.001, 0.010)))
    deaths: list[str] = []

    def on_change(_now: float, _obs: str, ch: spore.MemberChanged) -> None:
        if ch.state is spore.MemberState.DEAD:
            deaths.append(ch.node_id)

    for i, s in enumerate(signers):
        sim.add_node(
            ids[i],
            lambda s=s, c=(ids[0],) if i else (): spore.LatentSimNode(
                s, TRUST, contacts=c, on_change=on_change
            ),
        )
    sim.run_for(15.0)
    slow = set(ids[1 : 1 + n // 10]) if kind == "paused" else set()
    if kind == "loss":
        lossy = LinkProfile(delay=(0.001, 0.010), loss=0.10)
        for a in ids:
            for b in ids:
                if a != b:
                    sim.set_link(a, b, lossy, symmetric=False)
    for _ in range(24):  # 120 s
        for p in slow:
            sim.pause(p, 2.0)
        sim.run_for(5.0)
    return float(sum(1 for d in deaths if d not in slow))


def _seeded(fn: object, *args: object) -> Trial:
    counter = iter(range(10**6))
    return Trial("spore (meshnet.sim)", lambda: fn(*args, next(counter)))  # type: ignore[operator]


def sim_comparisons() -> list[Comparison]:
    out: list[Comparison] = []
    for n in SIZES:
        reps = 3 if n <= 64 else 1
        serf = 1.8 if n <= 64 else 2.0
        out.append(Comparison(
            f"join reaches all, N={n}", "seconds", False,
            _seeded(lambda n, s: sim_run(n, s)["join_s"], n), reference=serf,
            reference_source="Serf 99.99% convergence (200 ms, fan-out 3)", repetitions=reps,
        ))  # fmt: skip
        out.append(Comparison(
            f"join reaches all, N={n}", "gossip rounds", False,
            _seeded(lambda n, s: sim_run(n, s)["join_rounds"], n),
            reference=math.log(n) / math.log(1 + CFG.gossip_nodes),
            reference_source="SWIM epidemic log_(1+fan-out) N rounds", repetitions=reps,
        ))  # fmt: skip
        lo, _hi = CFG.suspicion_bounds(n)
        out.append(Comparison(
            f"crash declared dead by all, N={n}", "seconds", False,
            _seeded(lambda n, s: sim_run(n, s)["detect_s"], n), reference=1.58 * CFG.probe_interval + lo,
            reference_source="SWIM first detection 1.58 T + memberlist min suspicion", repetitions=reps,
        ))  # fmt: skip
        out.append(Comparison(
            f"gossip traffic, N={n}", "bytes/node/s", False,
            _seeded(lambda n, s: sim_run(n, s)["bytes_per_node_s"], n), reference=2 * 135 / CFG.probe_interval,
            reference_source="SWIM: 2 msgs x 135 B per member per period (unsigned)", repetitions=reps,
            note="ours carry signed records (~200 B each) and piggyback gossip",
        ))  # fmt: skip
    for kind in ("loss", "paused"):
        out.append(Comparison(
            f"false deaths in 120 s, N=32, 10% {kind}", "healthy nodes declared dead", False,
            _seeded(sim_false_deaths, kind), reference=0.0,
            reference_source="SWIM+Lifeguard goal (ratio undefined at 0)", repetitions=2,
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------- loopback vs swim-protocol
LOOP_N = 8


async def _ours(measure: str) -> float:
    net = meshnet.NetworkIdentity.generate("bench-loop")
    trust = spore.NetworkTrust(net.network_id, net.public_key)
    idents = [meshnet.NodeIdentity.generate() for _ in range(LOOP_N)]
    ports = _free_ports(LOOP_N)
    cores = [
        spore.LatentSpore(i, trust, clock=time.time, rng=random.Random(), addresses=(f"127.0.0.1:{p}",))
        for i, p in zip(idents, ports, strict=True)
    ]
    async with contextlib.AsyncExitStack() as stack:
        t0 = time.monotonic()
        nodes = []
        for k, (core, ident, port) in enumerate(zip(cores, idents, ports, strict=True)):
            contacts = (f"127.0.0.1:{ports[0]}",) if k else ()
            node = spore.LatentSporeNode(core, net.credentials_for(ident), port=port, contacts=contacts)
            nodes.append(await stack.enter_async_context(_CrashableNode(node)))
        with anyio.fail_after(120):
            # Polling the cores' views is the measurement (they have no change notification here).
            while not all(len(c.alive()) == LOOP_N - 1 for c in cores):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        if measure == "join":
            return time.monotonic() - t0
        victim = cores[-1].node_id
        await nodes[-1].aclose()
        t1 = time.monotonic()
        with anyio.fail_after(120):
            while not all(c.state_of(victim) is spore.MemberState.DEAD for c in cores[:-1]):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        return time.monotonic() - t1


class _CrashableNode:
    """Lets the benchmark stop one node early (a crash) while the stack still owns it."""

    def __init__(self, node: spore.LatentSporeNode) -> None:
        self.node = node
        self.closed = False

    async def __aenter__(self) -> _CrashableNode:
        await self.node.__aenter__()
        return self

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.node.__aexit__(None, None, None)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _theirs(measure: str) -> float:
    from swimprotocol.members import Members
    from swimprotocol.status import Status
    from swimprotocol.udp import UdpConfig, UdpTransport
    from swimprotocol.worker import Worker

    ports = _free_ports(LOOP_N)
    names = [f"127.0.0.1:{p}" for p in ports]
    members_list = []
    stacks = []

    def quiet_teardown(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        # swim-protocol's pending UDP sends fail noisily once asyncio.run shuts its executor down.
        if "cannot schedule new futures after shutdown" not in str(context.get("exception")):
            loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(quiet_teardown)
    secret = os.urandom(16).hex()  # one shared cluster secret: swim-protocol signs its packets
    t0 = time.monotonic()
    for k in range(LOOP_N):
        cfg = UdpConfig(secret=secret, local_name=names[k], peers=[names[0]] if k else [names[1]])
        members = Members(cfg)
        worker = Worker(cfg, members)
        transport = UdpTransport(cfg, worker)
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(transport)
        await stack.enter_async_context(worker)
        stacks.append(stack)
        members_list.append(members)

    def online(m: Members) -> set[str]:
        return {x.name for x in m.non_local if x.status == Status.ONLINE}

    try:
        deadline = time.monotonic() + 120
        while not all(len(online(m)) == LOOP_N - 1 for m in members_list):
            if time.monotonic() > deadline:
                raise TimeoutError("swim-protocol did not converge in 120 s")
            await asyncio.sleep(0.05)
        if measure == "join":
            return time.monotonic() - t0
        await stacks[-1].aclose()
        t1 = time.monotonic()
        while not all(
            names[-1] not in online(m) and _status(m, names[-1]) == Status.OFFLINE for m in members_list[:-1]
        ):
            if time.monotonic() > t1 + 120:
                raise TimeoutError("swim-protocol did not detect the failure in 120 s")
            await asyncio.sleep(0.05)
        return time.monotonic() - t1
    finally:
        for s in stacks[:-1]:
            await s.aclose()


def _status(members: object, name: str) -> object:
    return members.get(name).status  # type: ignore[attr-defined]


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(meshnet.free_port())
    return sorted(ports)


def loopback_comparisons() -> list[Comparison]:
    try:
        import swimprotocol  # noqa: F401
    except ImportError:
        return []
    out = []
    for what, label in (("join", "join convergence"), ("detect", "failure declared by all")):
        out.append(Comparison(
            f"loopback {label}, {LOOP_N} nodes", "seconds", False,
            Trial("spore over meshnet mTLS (memberlist LAN defaults)", lambda w=what: anyio.run(_ours, w)),
            peer=Trial("swim-protocol 0.6 UDP (its defaults: ping 1 s, suspect 5 s)", lambda w=what: asyncio.run(_theirs(w))),
            repetitions=3,
            note="detection: ours waits memberlist's Lifeguard suspicion (4-24 s at N=8), theirs a fixed 5 s",
        ))  # fmt: skip
    return out


def comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    """SPORE_BENCH_PART=sim or =loopback runs one half (both by default)."""
    part = os.environ.get("SPORE_BENCH_PART", "")
    return (sim_comparisons() if part in ("", "sim") else []) + (
        loopback_comparisons() if part in ("", "loopback") else []
    )
