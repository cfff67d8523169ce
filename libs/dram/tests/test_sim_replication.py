"""The replication core under meshnet.sim: relays, link failures, loss, a lost primary, promotion.

World: primary ``p`` streams to backups ``b1``/``b2`` over a direct connection each and a second
one through relay ``r``. The relay path fails for a while (its pages must be re-sent on the
direct ones), then the primary crashes. Checked per seed:

* the backups elect exactly one replica, the one with the highest watermark;
* every write the primary had counted as replicated to that backup (its watermark at the crash)
  is in the promoted image - the loss window is bounded by the reported lag;
* the promoted replica becomes primary (new epoch), the surviving backup Joins it, and after the
  workload stops both images are identical;
* a brand-new backup seeds its image from the surviving replica, Joins the new primary and ends
  identical too.
"""

from __future__ import annotations

from typing import Any

import pytest

from dram import (
    BackupCore,
    BackupState,
    BufferConfig,
    LinearCurve,
    PrimaryCore,
    Promote,
    ReadPages,
    ReplicationConfig,
    Send,
    SetPaused,
    SetThrottle,
)
from meshnet.sim import LinkProfile, NodeContext, Simulation, run_seeds, seed_count

pytestmark = pytest.mark.sim

PS = 64
PAGES = 48
CFG = ReplicationConfig(
    buffer=BufferConfig(capacity_bytes=PS * 24, page_size=PS, curve=LinearCurve(0.5)),
    batch_pages=6,
    min_window_bytes=PS * 12,
    max_window_bytes=PS * 48,
    ack_timeout=0.08,
    heartbeat_interval=0.02,
    failover_timeout=0.3,
    election_timeout=0.2,
)


def page_value(image: memoryview | bytearray, page: int) -> int:
    return int.from_bytes(image[page * PS : page * PS + 8], "little")


def wrap(origin: str, dest: str, frame: bytes) -> tuple[str, bytes]:
    """Connection ids: 'node' direct, 'node@relay' through a relay. Returns (next hop, payload)."""
    final, _, relay = dest.partition("@")
    header = f"{origin}|{relay}|{final}|".encode()
    return (relay or final), header + frame


def unwrap(payload: bytes) -> tuple[str, str, bytes]:
    origin, relay, final, frame = payload.split(b"|", 3)
    conn = origin.decode() + (f"@{relay.decode()}" if relay else "")
    return conn, final.decode(), frame


class Relay:
    def start(self, ctx: NodeContext) -> None: ...

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        _conn, final, _frame = unwrap(payload)
        ctx.send(final, payload)

    def timer(self, ctx: NodeContext, tag: str) -> None: ...


class Replica:
    """A node that starts as primary (``world['primary']``) or backup, and may be promoted."""

    def __init__(self, world: dict[str, Any], node_id: str) -> None:
        self.world = world
        self.node_id = node_id
        self.image = bytearray(PAGES * PS)
        self.backup: BackupCore | None = None
        self.primary: PrimaryCore | None = None
        self.dirty: set[int] = set()
        self.paused = False
        self.throttle = 0.0
        self.writes = True

    def start(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        if self.node_id in self.world["seed_from"]:  # a late, empty backup: seed, then join
            self.backup = BackupCore(self.node_id, memoryview(self.image), PS, CFG, now=ctx.now())
            source, join = self.world["seed_from"][self.node_id]
            self.act(ctx, self.backup.start_seeding([source], join=join, chunk_pages=8, now=ctx.now()))
        elif self.world["primary"] == self.node_id:
            self.primary = PrimaryCore(self.node_id, PAGES, CFG, now=ctx.now())
            for dest, backup in self.world["conns"]:
                self.act(ctx, self.primary.connect(dest, backup, ctx.now()))
            ctx.set_timer(0.002, "write")
            ctx.set_timer(0.02, "scan")
        else:
            self.backup = BackupCore(self.node_id, memoryview(self.image), PS, CFG, now=ctx.now())
        ctx.set_timer(0.01, "tick")

    def act(self, ctx: NodeContext, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, Send):
                hop, payload = wrap(self.node_id, a.dest, a.frame)
                ctx.send(hop, payload)
            elif isinstance(a, SetPaused):
                self.paused = a.paused
            elif isinstance(a, SetThrottle):
                self.throttle = a.fraction
            elif isinstance(a, ReadPages) and self.primary is not None:
                data = [(p, bytes(self.image[p * PS : (p + 1) * PS])) for p in a.pages]
                self.act(ctx, self.primary.pages_dirty(data, ctx.now()))
            elif isinstance(a, Promote):
                self.promote(ctx, a)

    def promote(self, ctx: NodeContext, a: Promote) -> None:
        assert self.backup is not None
        self.world["promotions"].append((self.node_id, a.epoch, self.backup.watermark))
        self.primary = PrimaryCore(
            self.node_id, PAGES, CFG, epoch=a.epoch, tags=self.backup.tags, now=ctx.now()
        )
        for peer in self.backup.peers:
            self.act(ctx, self.primary.connect(peer, peer, ctx.now()))
        ctx.set_timer(0.002, "write")
        ctx.set_timer(0.02, "scan")

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        conn, _final, frame = unwrap(payload)
        if self.primary is not None:
            self.act(ctx, self.primary.receive(conn, frame, ctx.now()))
        elif self.backup is not None:
            self.act(ctx, self.backup.receive(conn, frame, ctx.now()))

    def timer(self, ctx: NodeContext, tag: str) -> None:
        now = ctx.now()
        if tag == "tick":
            core = self.primary if self.primary is not None else self.backup
            assert core is not None
            self.act(ctx, core.tick(now))
            ctx.set_timer(0.01, "tick")
        elif tag == "write":
            if self.writes and not self.paused and ctx.rng.random() >= self.throttle:
                self.world["value"] += 1
                page = ctx.rng.randrange(PAGES)
                self.image[page * PS : (page + 1) * PS] = self.world["value"].to_bytes(8, "little") * (
                    PS // 8
                )
                self.dirty.add(page)
            ctx.set_timer(0.002, "write")
        elif tag == "scan":
            assert self.primary is not None
            pages = sorted(self.dirty)
            self.dirty.clear()
            data = [(p, bytes(self.image[p * PS : (p + 1) * PS])) for p in pages]
            self.act(ctx, self.primary.pages_dirty(data, now))
            if self.node_id == "p":
                for p in pages:
                    self.world["history"].append((self.primary.tags[p], p, page_value(self.image, p)))
                self.world["known_wm"] = {
                    b: self.primary.lag(b, now).replicated_seq for b in self.primary.backups
                }
            ctx.set_timer(0.02, "scan")


def scenario(seed: int) -> None:
    world: dict[str, Any] = {
        "primary": "p",
        "conns": [("b1", "b1"), ("b1@r", "b1"), ("b2", "b2"), ("b2@r", "b2")],
        "value": 0,
        "history": [],
        "known_wm": {},
        "promotions": [],
        "seed_from": {},
    }
    sim = Simulation(seed, LinkProfile(delay=(0.001, 0.008), loss=0.01, duplicate=0.01))
    for name in ("p", "b1", "b2"):
        sim.add_node(name, lambda name=name: Replica(world, name))
    sim.add_node("r", Relay)

    def one_leader_per_epoch(_sim: Simulation) -> None:
        epochs = [e for _n, e, _w in world["promotions"]]
        assert len(epochs) == len(set(epochs)), f"two promotions in one epoch: {world['promotions']}"

    sim.add_invariant(one_leader_per_epoch)
    rng_fail = sim.now + 0.3 + (seed % 7) * 0.05
    sim.after(rng_fail, lambda: sim.set_link("p", "r", LinkProfile(loss=1.0)))
    sim.after(rng_fail + 0.4, lambda: sim.set_link("p", "r", LinkProfile(delay=(0.001, 0.008))))
    crash_at = 1.2 + (seed % 5) * 0.1
    sim.run_for(crash_at)
    known = dict(world["known_wm"])
    history = list(world["history"])
    assert known, "primary never learned a watermark"
    sim.crash("p")
    sim.run_until(lambda: bool(world["promotions"]), timeout=3.0)
    (winner, epoch, wm) = world["promotions"][0]
    backups = {n: sim.node(n, Replica) for n in ("b1", "b2")}
    # least lag wins: no other backup had a higher watermark when the election ran
    for name, node in backups.items():
        assert node.backup is not None
        if name != winner:
            assert node.backup.watermark <= wm or node.backup.state is BackupState.FOLLOWING
    # every write counted as replicated to the winner before the crash is in its image
    winner_node = backups[winner]
    required: dict[int, int] = {}
    for tag, page, value in history:
        if tag <= known.get(winner, 0):
            required[page] = max(required.get(page, 0), value)
    for page, value in required.items():
        assert page_value(winner_node.image, page) >= value, (winner, page, value)
    # the survivor follows the new primary and converges once the workload stops
    sim.run_for(0.6)
    winner_node.writes = False
    other = backups["b2" if winner == "b1" else "b1"]
    assert winner_node.primary is not None
    sim.run_for(1.0)
    assert other.backup is not None
    assert other.backup.epoch == epoch
    assert winner_node.primary.lag(other.node_id, sim.now).bytes == 0
    assert other.image == winner_node.image
    # a new backup seeds from the surviving replica, then joins the new primary
    world["seed_from"]["b3"] = (other.node_id, winner)
    sim.add_node("b3", lambda: Replica(world, "b3"))
    primary = winner_node.primary
    sim.after(0.01, lambda: winner_node.act(winner_node.ctx, primary.connect("b3", "b3", sim.now)))
    sim.run_for(1.5)
    fresh = sim.node("b3", Replica)
    assert fresh.backup is not None
    assert fresh.backup.state is BackupState.FOLLOWING
    assert "b3" in primary.backups
    assert primary.lag("b3", sim.now).bytes == 0
    assert fresh.image == winner_node.image


def test_failover_promotes_least_lagging_backup_without_losing_replicated_writes() -> None:
    run_seeds(scenario, seeds=range(seed_count(30)))
