"""Behaviour of the deterministic simulator, specified with two tiny example protocols.

``Pinger`` sends numbered pings to a peer and counts acks; ``Flooder`` is a flooding broadcast
that re-sends until acknowledged. Both are written the way real protocol adapters are: all state
in the object, all effects through the NodeContext.
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from meshnet.sim import (
    InvariantError,
    LinkProfile,
    NodeContext,
    SimNode,
    Simulation,
    SimulationError,
    SimulationFailure,
    SimulationTimeoutError,
    run_seeds,
    seed_count,
)

HERE = Path(__file__).resolve()


class Pinger:
    """Sends ``count`` pings to ``peer`` (one per 10 ms); answers pings with acks."""

    def __init__(self, peer: str, count: int = 0) -> None:
        self.peer = peer
        self.count = count
        self.sent = 0
        self.acked: list[int] = []
        self.pings_seen: list[int] = []
        self.started_at: float | None = None
        self.timer_times: list[float] = []

    def start(self, ctx: NodeContext) -> None:
        self.started_at = ctx.now()
        ctx.storage["starts"] = ctx.storage.get("starts", 0) + 1
        if self.count:
            ctx.set_timer(0.010, "tick")

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        kind, _, num = payload.partition(b":")
        if kind == b"ping":
            self.pings_seen.append(int(num))
            ctx.send(src, b"ack:" + num)
        elif kind == b"ack":
            self.acked.append(int(num))

    def timer(self, ctx: NodeContext, tag: str) -> None:
        self.timer_times.append(ctx.now())
        if self.sent < self.count:
            ctx.send(self.peer, b"ping:%d" % self.sent)
            self.sent += 1
            ctx.set_timer(0.010, "tick")


class Flooder:
    """Flooding broadcast: whoever has the value re-sends it to everyone every 50 ms until they ack.

    The value is persisted in ``ctx.storage`` (a node that restarts still has it).
    """

    def __init__(self, origin: bool = False) -> None:
        self.origin = origin
        self.value: bytes | None = None
        self.acked: set[str] = set()

    def start(self, ctx: NodeContext) -> None:
        stored = ctx.storage.get("value")
        if self.origin and stored is None:
            stored = b"hello"
            ctx.storage["value"] = stored
        self.value = stored
        if self.value is not None:
            self._flood(ctx)

    def _flood(self, ctx: NodeContext) -> None:
        for peer in ctx.nodes:
            if peer != ctx.node_id and peer not in self.acked:
                ctx.send(peer, b"v:" + (self.value or b""))
        ctx.set_timer(0.050, "flood")

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        if payload.startswith(b"v:"):
            ctx.send(src, b"ok")
            if self.value is None:
                self.value = payload[2:]
                ctx.storage["value"] = self.value
                ctx.log(f"learned {self.value!r} from {src}")
                self._flood(ctx)
        elif payload == b"ok":
            self.acked.add(src)

    def timer(self, ctx: NodeContext, tag: str) -> None:
        if len(self.acked) < len(ctx.nodes) - 1:
            self._flood(ctx)


def ping_pair(seed: int, link: LinkProfile | None = None, count: int = 20) -> Simulation:
    sim = Simulation(seed=seed, default_link=link or LinkProfile(delay=(0.001, 0.010)))
    sim.add_node("a", lambda: Pinger("b", count))
    sim.add_node("b", lambda: Pinger("a"))
    return sim


def broadcast_scenario(seed: int) -> None:
    """Five nodes, lossy duplicating links, a partition and a crash: everyone still learns the value."""
    sim = Simulation(seed=seed, default_link=LinkProfile(delay=(0.001, 0.030), loss=0.2, duplicate=0.1))
    names = ["n0", "n1", "n2", "n3", "n4"]
    for name in names:
        sim.add_node(name, functools.partial(Flooder, name == "n0"))

    def only_one_value(s: Simulation) -> None:
        for node in s.nodes().values():
            assert isinstance(node, Flooder)
            assert node.value in (None, b"hello"), node.value

    sim.add_invariant(only_one_value)
    sim.partition({"n0", "n1"}, {"n2", "n3", "n4"})
    sim.run_for(0.5)
    assert all(sim.node(n, Flooder).value is None for n in ("n2", "n3", "n4"))
    sim.crash("n1", restart_after=0.2)
    sim.heal()
    sim.run_until(lambda: all(sim.is_up(n) and sim.node(n, Flooder).value == b"hello" for n in names), 30.0)


# --------------------------------------------------------------------------- delivery and delay
def test_every_ping_is_acked_on_a_clean_network() -> None:
    sim = ping_pair(1)
    sim.run_for(1.0)
    assert sorted(sim.node("a", Pinger).acked) == list(range(20))
    assert sim.stats.delivered == 40
    assert sim.stats.dropped_loss == sim.stats.dropped_partition == 0


def test_delivery_delay_stays_inside_the_link_range() -> None:
    sim = Simulation(seed=3, default_link=LinkProfile(delay=(0.2, 0.3)))
    sim.add_node("a", lambda: Pinger("b", 1))
    sim.add_node("b", lambda: Pinger("a"))
    sim.run_for(0.010 + 0.199)  # the ping leaves at t=0.010; nothing can arrive before 0.210
    assert sim.node("b", Pinger).pings_seen == []
    sim.run_for(0.101)
    assert sim.node("b", Pinger).pings_seen == [0]


def test_a_callable_delay_draws_from_the_network_rng() -> None:
    seen: list[object] = []

    def fixed(rng: random.Random) -> float:
        seen.append(rng)
        return 0.5

    sim = Simulation(seed=0, default_link=LinkProfile(delay=fixed))
    sim.add_node("a", lambda: Pinger("b", 1))
    sim.add_node("b", lambda: Pinger("a"))
    sim.run_for(0.509)
    assert sim.node("b", Pinger).pings_seen == []
    sim.run_for(0.002)
    assert sim.node("b", Pinger).pings_seen == [0]
    assert len(seen) == 2  # the ping, then its ack
    assert all(isinstance(rng, random.Random) for rng in seen)


def test_a_callable_delay_returning_a_negative_value_is_refused() -> None:
    sim = Simulation(seed=0, default_link=LinkProfile(delay=lambda rng: -1.0))
    sim.add_node("a", lambda: Pinger("b", 1))
    sim.add_node("b", lambda: Pinger("a"))
    with pytest.raises(SimulationError, match=r"delay callable returned -1\.0"):
        sim.run_for(1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"delay": (0.5, 0.1)}, "delay"),
        ({"delay": (-1.0, 1.0)}, "delay"),
        ({"delay": "fast"}, "delay"),
        ({"loss": 1.5}, "loss"),
        ({"duplicate": -0.1}, "duplicate"),
        ({"corrupt": 2}, "corrupt"),
    ],
)
def test_a_bad_link_profile_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(SimulationError, match=f"LinkProfile.{field}"):
        LinkProfile(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- loss, duplication, order
def test_total_loss_drops_every_message() -> None:
    sim = ping_pair(2, LinkProfile(loss=1.0))
    sim.run_for(1.0)
    assert sim.node("b", Pinger).pings_seen == []
    assert sim.stats.dropped_loss == 20
    assert sim.stats.delivered == 0


def test_partial_loss_drops_some_and_delivers_the_rest() -> None:
    sim = ping_pair(5, LinkProfile(loss=0.3), count=200)
    sim.run_for(5.0)
    received = len(sim.node("b", Pinger).pings_seen)
    assert 0 < received < 200
    assert received + sim.stats.dropped_loss >= 200


def test_duplication_delivers_a_second_copy() -> None:
    sim = ping_pair(4, LinkProfile(duplicate=1.0), count=5)
    sim.run_for(1.0)
    seen = sim.node("b", Pinger).pings_seen
    assert sorted(seen) == sorted([0, 1, 2, 3, 4] * 2)
    assert sim.stats.duplicated >= 5


def test_random_delays_reorder_messages_and_fifo_links_do_not() -> None:
    # Pings leave 10 ms apart; delays up to 100 ms let later ones overtake earlier ones.
    sim = ping_pair(6, LinkProfile(delay=(0.001, 0.100)), count=50)
    sim.run_for(2.0)
    seen = sim.node("b", Pinger).pings_seen
    assert sorted(seen) == list(range(50))
    assert seen != sorted(seen)
    sim = ping_pair(6, LinkProfile(delay=(0.001, 0.100), fifo=True), count=50)
    sim.run_for(2.0)
    assert sim.node("b", Pinger).pings_seen == list(range(50))


def test_corruption_flips_exactly_one_bit() -> None:
    sim = ping_pair(8, LinkProfile(corrupt=1.0), count=1)
    got: list[bytes] = []

    class Recorder:
        def start(self, ctx: NodeContext) -> None:
            pass

        def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
            got.append(payload)

        def timer(self, ctx: NodeContext, tag: str) -> None:
            pass

    sim = Simulation(seed=8, default_link=LinkProfile(corrupt=1.0))
    sim.add_node("a", lambda: Pinger("b", 1))
    sim.add_node("b", Recorder)
    sim.run_for(1.0)
    assert len(got) == 1
    diff = int.from_bytes(got[0], "big") ^ int.from_bytes(b"ping:0", "big")
    assert bin(diff).count("1") == 1
    assert sim.stats.corrupted == 1


def test_set_link_overrides_the_default_for_one_pair_only() -> None:
    sim = Simulation(seed=9)
    sim.add_node("a", lambda: Pinger("b", 5))
    sim.add_node("b", lambda: Pinger("a"))
    sim.add_node("c", lambda: Pinger("b", 5))
    sim.set_link("a", "b", LinkProfile(loss=1.0))
    sim.run_for(1.0)
    assert sim.node("a", Pinger).acked == []
    assert sorted(sim.node("c", Pinger).acked) == [0, 1, 2, 3, 4]


def test_an_asymmetric_link_only_affects_one_direction() -> None:
    sim = ping_pair(10)
    sim.set_link("b", "a", LinkProfile(loss=1.0), symmetric=False)
    sim.run_for(1.0)
    assert sorted(sim.node("b", Pinger).pings_seen) == list(range(20))
    assert sim.node("a", Pinger).acked == []


# --------------------------------------------------------------------------- partitions
def test_partition_blocks_both_ways_and_heal_restores() -> None:
    sim = Simulation(seed=11)
    sim.add_node("a", lambda: Pinger("c", 100))
    sim.add_node("b", lambda: Pinger("c", 100))
    sim.add_node("c", lambda: Pinger("a"))
    sim.partition({"a", "b"}, {"c"})
    sim.run_for(0.5)
    assert sim.node("c", Pinger).pings_seen == []
    assert sim.stats.dropped_partition > 0
    sim.heal()
    sim.run_for(0.5)
    assert sim.node("c", Pinger).pings_seen
    assert sim.node("a", Pinger).acked


def test_a_partition_drops_messages_already_in_flight() -> None:
    sim = Simulation(seed=12, default_link=LinkProfile(delay=(0.5, 0.5)))
    sim.add_node("a", lambda: Pinger("b", 1))
    sim.add_node("b", lambda: Pinger("a"))
    sim.run_for(0.1)  # the ping is on the wire, due at 0.51
    sim.partition({"a"}, {"b"})
    sim.run_for(1.0)
    assert sim.node("b", Pinger).pings_seen == []


def test_a_oneway_partition_lets_the_other_direction_through() -> None:
    sim = ping_pair(13)
    sim.partition_oneway({"b"}, {"a"})
    sim.run_for(1.0)
    assert sorted(sim.node("b", Pinger).pings_seen) == list(range(20))
    assert sim.node("a", Pinger).acked == []


def test_isolate_cuts_one_node_from_all_others() -> None:
    sim = Simulation(seed=14)
    sim.add_node("a", lambda: Pinger("b", 5))
    sim.add_node("b", lambda: Pinger("a", 5))
    sim.add_node("c", lambda: Pinger("a", 5))
    sim.isolate("a")
    sim.run_for(1.0)
    assert sim.node("a", Pinger).pings_seen == []
    assert sim.node("b", Pinger).acked == []


def test_partition_of_an_unknown_node_is_refused() -> None:
    sim = ping_pair(0)
    with pytest.raises(SimulationError, match="unknown node 'zz'"):
        sim.partition({"a"}, {"zz"})
    with pytest.raises(SimulationError, match="not the string"):
        sim.partition("ab", {"a"})


# --------------------------------------------------------------------------- crash and restart
def test_crash_loses_memory_keeps_storage_and_drops_messages_to_the_dead_node() -> None:
    sim = ping_pair(15, count=100)
    sim.run_for(0.3)
    pings_before = len(sim.node("b", Pinger).pings_seen)
    assert pings_before > 0
    sim.crash("b")
    assert not sim.is_up("b")
    with pytest.raises(SimulationError, match="crashed"):
        sim.node("b")
    sim.run_for(0.3)
    assert sim.stats.dropped_down > 0
    sim.restart("b")
    sim.run_for(0.05)
    fresh = sim.node("b", Pinger)
    assert 0 < len(fresh.pings_seen) < pings_before + 10  # memory was lost: a new object
    assert sim.storage("b")["starts"] == 2  # disk survived


def test_timers_of_a_crashed_incarnation_never_fire() -> None:
    sim = ping_pair(16, count=100)
    sim.run_for(0.1)
    sim.crash("a")
    crashed_at = len(sim.trace)
    sim.run_for(1.0)
    assert any(line.endswith("timer a tick") for line in sim.trace[:crashed_at])
    assert not any(line.endswith("timer a tick") for line in sim.trace[crashed_at:])
    sim.restart("a")
    sim.run_for(0.05)
    assert 0 < len(sim.node("a", Pinger).timer_times) <= 5


def test_crash_with_restart_after_comes_back_by_itself() -> None:
    sim = ping_pair(17)
    sim.crash("b", restart_after=0.2)
    sim.run_for(0.1)
    assert not sim.is_up("b")
    sim.run_for(0.2)
    assert sim.is_up("b")
    assert sim.node("b", Pinger).started_at == pytest.approx(0.2)


def test_restart_of_a_live_node_is_a_reboot() -> None:
    sim = ping_pair(18)
    sim.run_for(0.1)
    old = sim.node("a")
    sim.restart("a")
    sim.run_for(0.01)
    assert sim.node("a") is not old
    assert sim.storage("a")["starts"] == 2


# --------------------------------------------------------------------------- pause
def test_a_paused_node_gets_nothing_then_its_backlog_in_order() -> None:
    sim = Simulation(seed=19, default_link=LinkProfile(delay=(0.001, 0.001)))
    sim.add_node("a", lambda: Pinger("b", 100))
    sim.add_node("b", lambda: Pinger("a", 100))
    sim.run_for(0.1)
    b = sim.node("b", Pinger)
    seen_before, ticks_before = len(b.pings_seen), len(b.timer_times)
    sim.pause("b", 0.5)
    sim.run_for(0.49)
    assert sim.is_paused("b")
    assert (len(b.pings_seen), len(b.timer_times)) == (seen_before, ticks_before)
    sim.run_for(0.02)
    assert not sim.is_paused("b")
    assert len(b.pings_seen) >= seen_before + 40
    assert b.pings_seen == sorted(b.pings_seen)  # backlog handed over in arrival order
    assert b.timer_times[ticks_before] == pytest.approx(0.6)  # the overdue tick fired at resume


def test_pausing_again_extends_the_pause() -> None:
    sim = ping_pair(20, count=100)
    sim.pause("b", 0.2)
    sim.run_for(0.1)
    sim.pause("b", 0.3)  # now until 0.4
    sim.run_for(0.25)
    assert sim.is_paused("b")
    sim.run_for(0.1)
    assert not sim.is_paused("b")


def test_a_crash_during_a_pause_discards_the_backlog() -> None:
    sim = ping_pair(21, count=100)
    sim.run_for(0.05)
    sim.pause("b", 1.0)
    sim.run_for(0.3)
    sim.crash("b")
    sim.restart("b")
    sim.run_for(0.001)
    assert sim.node("b", Pinger).pings_seen == []


# --------------------------------------------------------------------------- invariants and running
def test_a_failing_invariant_stops_the_run_and_says_when() -> None:
    sim = ping_pair(22)

    def fewer_than_five_acks(s: Simulation) -> None:
        assert len(s.node("a", Pinger).acked) < 5, "too many acks"

    sim.add_invariant(fewer_than_five_acks)
    expected = r"'fewer_than_five_acks' failed at t=0\.0\d+ \(seed=22\).*too many acks"
    with pytest.raises(InvariantError, match=expected):
        sim.run_for(1.0)
    assert len(sim.node("a", Pinger).acked) == 5


def test_run_until_stops_as_soon_as_the_condition_holds() -> None:
    sim = ping_pair(23)
    assert sim.run_until(lambda: len(sim.node("a", Pinger).acked) >= 3, timeout=10.0)
    assert len(sim.node("a", Pinger).acked) == 3
    assert sim.now < 0.1


def test_run_until_times_out_in_virtual_time() -> None:
    sim = ping_pair(24, LinkProfile(loss=1.0))
    with pytest.raises(SimulationTimeoutError, match=r"within 2\.0 virtual seconds"):
        sim.run_until(lambda: bool(sim.node("a", Pinger).acked), timeout=2.0)
    assert sim.now == pytest.approx(2.0)
    assert not sim.run_until(lambda: False, timeout=1.0, raise_on_timeout=False)


def test_a_livelock_hits_the_event_budget() -> None:
    class Spinner:
        def start(self, ctx: NodeContext) -> None:
            ctx.set_timer(0.0, "spin")

        def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
            pass

        def timer(self, ctx: NodeContext, tag: str) -> None:
            ctx.set_timer(0.0, "spin")

    sim = Simulation(seed=0, max_events=1000)
    sim.add_node("s", Spinner)
    with pytest.raises(SimulationError, match="max_events=1000"):
        sim.run_for(1.0)


def test_rearming_a_timer_replaces_it_and_cancel_forgets_it() -> None:
    fired: list[tuple[float, str]] = []

    class Clock:
        def start(self, ctx: NodeContext) -> None:
            ctx.set_timer(1.0, "x")
            ctx.set_timer(2.0, "x")
            ctx.set_timer(0.5, "y")
            ctx.cancel_timer("y")

        def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
            pass

        def timer(self, ctx: NodeContext, tag: str) -> None:
            fired.append((ctx.now(), tag))

    sim = Simulation(seed=0)
    sim.add_node("c", Clock)
    sim.run_for(5.0)
    assert fired == [(2.0, "x")]


def test_sending_to_an_unknown_node_is_dropped_and_traced() -> None:
    sim = Simulation(seed=0)
    sim.add_node("a", lambda: Pinger("ghost", 1))
    sim.run_for(1.0)
    assert sim.stats.dropped_unknown == 1
    assert any("reason=unknown-node" in line for line in sim.trace)


def test_node_helpers_and_bad_input() -> None:
    sim = ping_pair(0)
    assert isinstance(sim.node("a"), SimNode)
    with pytest.raises(SimulationError, match="already exists"):
        sim.add_node("a", lambda: Pinger("b"))
    with pytest.raises(SimulationError, match="not a Flooder"):
        sim.node("a", Flooder)
    with pytest.raises(SimulationError, match="run_for duration"):
        sim.run_for(-1)
    with pytest.raises(SimulationError, match="node_id"):
        sim.add_node("a b", lambda: Pinger("b"))
    assert list(sim.nodes()) == ["a", "b"]


def test_each_node_and_incarnation_gets_its_own_reproducible_rng() -> None:
    draws: dict[str, list[float]] = {}

    class Drawer:
        def start(self, ctx: NodeContext) -> None:
            draws.setdefault(f"{ctx.node_id}#{ctx.incarnation}", []).append(ctx.rng.random())

        def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
            pass

        def timer(self, ctx: NodeContext, tag: str) -> None:
            pass

    for _ in range(2):
        sim = Simulation(seed=5)
        sim.add_node("a", Drawer)
        sim.add_node("b", Drawer)
        sim.run_for(0.1)
        sim.restart("a")
        sim.run_for(0.1)
    assert draws["a#0"][0] == draws["a#0"][1]
    assert len({draws["a#0"][0], draws["b#0"][0], draws["a#1"][0]}) == 3


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_trace_byte_for_byte_and_different_seeds_differ() -> None:
    digests = []
    for seed in (31, 31, 32):
        sim = ping_pair(seed, LinkProfile(delay=(0.001, 0.05), loss=0.1, duplicate=0.1), count=50)
        sim.pause("b", 0.1)
        sim.run_for(0.3)
        sim.crash("a", restart_after=0.1)
        sim.run_for(1.0)
        digests.append(sim.trace_digest())
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_the_trace_does_not_depend_on_the_python_hash_seed() -> None:
    """Iterating sets of node ids in hash order would break replay in another process."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('t', {str(HERE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "from meshnet.sim._simulation import collect_simulations\n"
        "with collect_simulations() as sims:\n"
        "    m.broadcast_scenario(3)\n"
        "print(sims[0].trace_digest())\n"
    )
    outs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        command = [sys.executable, "-c", code]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outs.add(done.stdout.strip())
    assert len(outs) == 1


# --------------------------------------------------------------------------- many seeds
@pytest.mark.sim
def test_flooding_broadcast_reaches_everyone_despite_loss_partition_and_crash() -> None:
    assert run_seeds(broadcast_scenario, seeds=range(seed_count(default=60))) >= 1


def test_run_seeds_reports_the_failing_seed_with_a_reproduction_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MYCELIUM_SIM_SEED", raising=False)

    def fails_on_seed_3(seed: int) -> None:
        sim = ping_pair(seed, count=2)
        sim.run_for(0.1)
        assert seed != 3, "seed three is cursed"

    with pytest.raises(SimulationFailure) as info:
        run_seeds(fails_on_seed_3, seeds=range(10))
    failure = info.value
    assert failure.seed == 3
    assert "MYCELIUM_SIM_SEED=3 pytest" in failure.repro
    assert "test_run_seeds_reports_the_failing_seed" in failure.repro
    message = str(failure)
    assert "seed three is cursed" in message
    assert f"reproduce: {failure.repro}" in message.splitlines()
    assert "trace lines" in message
    assert isinstance(failure.__cause__, AssertionError)


def test_run_seeds_uses_a_custom_repro_template_and_the_seed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[int] = []
    monkeypatch.setenv("MYCELIUM_SIM_SEED", "7")
    assert run_seeds(ran.append, seeds=range(100)) == 1
    assert ran == [7]
    monkeypatch.delenv("MYCELIUM_SIM_SEED")

    def boom(seed: int) -> None:
        raise RuntimeError("boom")

    with pytest.raises(SimulationFailure, match=r"reproduce: make replay SEED=0"):
        run_seeds(boom, seeds=[0], repro="make replay SEED={seed}")
    with pytest.raises(SimulationFailure, match=r"reproduce: MYCELIUM_SIM_SEED=4 pytest t\.py::x \{y\}"):
        run_seeds(boom, seeds=[4], repro="pytest t.py::x {y}")


def test_seed_count_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCELIUM_SIM_SEEDS", "42")
    assert seed_count() == 42
    monkeypatch.setenv("MYCELIUM_SIM_SEEDS", "lots")
    with pytest.raises(SimulationError, match="MYCELIUM_SIM_SEEDS must be an integer"):
        seed_count()
    monkeypatch.delenv("MYCELIUM_SIM_SEEDS")
    assert seed_count(default=9) == 9


def test_the_replay_cli_prints_the_same_trace_as_the_in_process_run() -> None:
    from meshnet.sim._simulation import collect_simulations

    with collect_simulations() as sims:
        broadcast_scenario(4)
    done = subprocess.run(
        [sys.executable, "-m", "meshnet.sim", f"{HERE}:broadcast_scenario", "--seed", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(f"sha256={sims[0].trace_digest()}")
    assert lines[1:-1] == sims[0].trace
    assert lines[-1] == "OK seed=4"


def test_the_replay_cli_explains_a_bad_target() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshnet.sim", "no_such_module_xyz:f", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot import scenario module 'no_such_module_xyz'" in done.stderr
    assert "Traceback" not in done.stderr


def test_trace_limit_keeps_the_tail_and_the_digest_of_everything() -> None:
    full = ping_pair(40, count=100)
    full.run_for(2.0)
    short = Simulation(seed=40, default_link=LinkProfile(delay=(0.001, 0.010)), trace_limit=50)
    short.add_node("a", lambda: Pinger("b", 100))
    short.add_node("b", lambda: Pinger("a"))
    short.run_for(2.0)
    assert len(full.trace) > 200
    assert 50 <= len(short.trace) <= 100
    assert short.trace == full.trace[-len(short.trace) :]
    assert short.trace_digest() == full.trace_digest()


def test_a_context_kept_past_a_crash_can_no_longer_act() -> None:
    kept: list[NodeContext] = []

    class Keeper:
        def start(self, ctx: NodeContext) -> None:
            kept.append(ctx)

        def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
            pass

        def timer(self, ctx: NodeContext, tag: str) -> None:
            raise AssertionError("a stale timer fired")

    sim = Simulation(seed=0)
    sim.add_node("k", Keeper)
    sim.add_node("b", lambda: Pinger("k"))
    sim.run_for(0.1)
    sim.restart("k")
    sim.run_for(0.1)
    stale, fresh = kept
    assert not stale.is_current()
    assert fresh.is_current()
    stale.send("b", b"ping:1")
    stale.set_timer(0.01, "x")
    sim.run_for(1.0)
    assert sim.node("b", Pinger).pings_seen == []
    assert sim.stats.sent == 0


def test_a_node_can_send_to_itself() -> None:
    sim = Simulation(seed=0)
    sim.add_node("a", lambda: Pinger("a", 3))
    sim.run_for(1.0)
    assert sorted(sim.node("a", Pinger).acked) == [0, 1, 2]


def test_the_replay_cli_also_takes_a_dotted_module(tmp_path: Path) -> None:
    (tmp_path / "my_scenarios.py").write_text(
        "from meshnet.sim import Simulation\n"
        "def lonely(seed):\n"
        "    sim = Simulation(seed)\n"
        "    sim.run_for(1.0)\n"
        "    assert seed != 13, 'thirteen'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    ok = subprocess.run(
        [sys.executable, "-m", "meshnet.sim", "my_scenarios:lonely", "--seed", "1"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == "OK seed=1"
    bad = subprocess.run(
        [sys.executable, "-m", "meshnet.sim", "my_scenarios:lonely", "--seed", "13"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "FAILED seed=13: AssertionError: thirteen" in bad.stderr
