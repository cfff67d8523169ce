"""The deterministic world: a virtual clock, a seeded network and nodes that crash, pause and restart.

Determinism rests on three rules: every source of randomness is a ``random.Random`` derived from
the seed (one for the network, one per node incarnation); events are ordered by (virtual time,
sequence number) so ties break in scheduling order; and nothing iterates a ``set`` or ``dict`` of
node ids in hash order where the order could reach the trace.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

import attrs

from meshnet.sim._errors import InvariantError, SimulationError, SimulationTimeoutError
from meshnet.sim._link import LinkProfile
from meshnet.sim._node import NodeContext, SimNode

__all__ = ["SimStats", "Simulation", "derive_rng"]

N = TypeVar("N")
Invariant = Callable[["Simulation"], object]

# Simulations created while a collector is active are recorded here, so that run_seeds and the
# replay CLI can show the trace of the run that failed without the scenario having to return it.
_collectors: list[list[Simulation]] = []


@contextlib.contextmanager
def collect_simulations() -> Iterator[list[Simulation]]:
    """Record every Simulation constructed inside the block (innermost collector wins)."""
    found: list[Simulation] = []
    _collectors.append(found)
    try:
        yield found
    finally:
        _collectors.remove(found)


def derive_rng(seed: int, *parts: object) -> random.Random:
    """A ``random.Random`` that depends only on ``seed`` and ``parts`` (stable across processes)."""
    material = ":".join([str(seed), *(str(p) for p in parts)]).encode()
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:16], "big"))


def _head(src: str, dst: str, payload: bytes) -> str:
    return f"{src}->{dst} len={len(payload)} h={hashlib.blake2b(payload, digest_size=4).hexdigest()}"


@attrs.define
class SimStats:
    """Counters over the whole run, for tests that check the network did what it was told."""

    sent: int = 0
    delivered: int = 0
    dropped_loss: int = 0
    dropped_partition: int = 0
    dropped_down: int = 0
    dropped_unknown: int = 0
    duplicated: int = 0
    corrupted: int = 0
    timers_fired: int = 0
    events: int = 0


@attrs.define
class _Slot:
    factory: Callable[[], SimNode]
    storage: dict[str, Any] = attrs.Factory(dict)
    incarnation: int = -1
    up: bool = False
    obj: SimNode | None = None
    ctx: NodeContext | None = None
    paused: bool = False
    pause_until: float = 0.0
    backlog: list[_Deliver | _Timer] = attrs.Factory(list)
    timers: dict[str, int] = attrs.Factory(dict)


@attrs.frozen(slots=True)
class _Start:
    node: str
    incarnation: int


@attrs.frozen(slots=True)
class _Deliver:
    src: str
    dst: str
    payload: bytes
    head: str  # "src->dst len=.. h=.." for the trace, computed once at send time


@attrs.frozen(slots=True)
class _Timer:
    node: str
    incarnation: int
    tag: str
    timer_id: int


@attrs.frozen(slots=True)
class _Resume:
    node: str
    incarnation: int
    until: float


@attrs.frozen(slots=True)
class _Call:
    fn: Callable[[], object]
    label: str


_Event = _Start | _Deliver | _Timer | _Resume | _Call


class Simulation:
    """A seeded, single-threaded discrete-event world. Same seed, same calls: same trace, byte for byte."""

    def __init__(
        self,
        seed: int,
        default_link: LinkProfile | None = None,
        *,
        max_events: int = 5_000_000,
        trace_limit: int | None = None,
    ) -> None:
        if not isinstance(seed, int):
            raise SimulationError(f"seed must be an int, got {seed!r}")
        if max_events < 1:
            raise SimulationError(f"max_events must be >= 1, got {max_events!r}")
        if trace_limit is not None and trace_limit < 1:
            raise SimulationError(f"trace_limit must be >= 1 or None, got {trace_limit!r}")
        self.trace_limit = trace_limit
        self._trace_hash = hashlib.sha256()
        self.seed = seed
        self.default_link = default_link if default_link is not None else LinkProfile()
        self.max_events = max_events
        self.trace: list[str] = []
        self.stats = SimStats()
        self._now = 0.0
        self._seq = 0
        self._heap: list[tuple[float, int, _Event]] = []
        self._net_rng = derive_rng(seed, "network")
        self._nodes: dict[str, _Slot] = {}
        self._links: dict[tuple[str, str], LinkProfile] = {}
        self._fifo_last: dict[tuple[str, str], float] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._invariants: list[tuple[str, Invariant]] = []
        for collector in _collectors[-1:]:
            collector.append(self)

    # ----------------------------------------------------------------- inspection
    @property
    def now(self) -> float:
        return self._now

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    def is_up(self, node_id: str) -> bool:
        return self._slot(node_id).up

    def is_paused(self, node_id: str) -> bool:
        return self._slot(node_id).paused

    @overload
    def node(self, node_id: str) -> SimNode: ...
    @overload
    def node(self, node_id: str, kind: type[N]) -> N: ...
    def node(self, node_id: str, kind: type[Any] | None = None) -> Any:
        """The live node object; with ``kind``, also checked to be that type (handy under mypy)."""
        slot = self._slot(node_id)
        if not slot.up or slot.obj is None:
            raise SimulationError(f"node {node_id!r} is crashed; restart it or check sim.is_up first")
        if kind is not None and not isinstance(slot.obj, kind):
            raise SimulationError(f"node {node_id!r} is a {type(slot.obj).__name__}, not a {kind.__name__}")
        return slot.obj

    def nodes(self) -> dict[str, SimNode]:
        """The live node objects by id, in the order added (crashed nodes left out)."""
        return {nid: s.obj for nid, s in self._nodes.items() if s.up and s.obj is not None}

    def storage(self, node_id: str) -> dict[str, Any]:
        """The node's persistent ``ctx.storage`` (readable even while the node is down)."""
        return self._slot(node_id).storage

    def trace_digest(self) -> str:
        """sha256 of the whole trace (each line + newline), including lines trimmed by ``trace_limit``."""
        return self._trace_hash.copy().hexdigest()

    # ----------------------------------------------------------------- building the world
    def add_node(self, node_id: str, factory: Callable[[], SimNode]) -> None:
        """Add a node; ``factory()`` builds it now and again after every restart."""
        if not isinstance(node_id, str) or not node_id or any(c.isspace() for c in node_id):
            raise SimulationError(f"node_id must be a non-empty string without spaces, got {node_id!r}")
        if node_id in self._nodes:
            raise SimulationError(f"node {node_id!r} already exists")
        if not callable(factory):
            raise SimulationError(f"factory for {node_id!r} must be callable, got {factory!r}")
        self._nodes[node_id] = _Slot(factory)
        self._boot(node_id)

    def set_link(self, src: str, dst: str, profile: LinkProfile, *, symmetric: bool = True) -> None:
        """Use ``profile`` for messages src -> dst (and dst -> src unless ``symmetric=False``)."""
        self._slot(src)
        self._slot(dst)
        if not isinstance(profile, LinkProfile):
            raise SimulationError(f"profile must be a LinkProfile, got {profile!r}")
        self._links[(src, dst)] = profile
        if symmetric:
            self._links[(dst, src)] = profile
        self._trace(f"link {src}{'<->' if symmetric else '->'}{dst} {profile!r}")

    def add_invariant(self, check: Invariant, name: str | None = None) -> None:
        """Run ``check(sim)`` after every event step; an AssertionError in it stops the run."""
        label = name if name is not None else str(getattr(check, "__name__", "invariant"))
        self._invariants.append((label, check))

    # ----------------------------------------------------------------- faults
    def crash(self, node_id: str, *, restart_after: float | None = None) -> None:
        """Kill the node: its object, timers and unprocessed backlog are gone; storage stays."""
        slot = self._slot(node_id)
        if slot.up:
            self._trace(f"crash {node_id}#{slot.incarnation}")
            slot.up = False
            slot.obj = None
            slot.ctx = None
            slot.paused = False
            slot.backlog.clear()
            slot.timers.clear()
        if restart_after is not None:
            self.after(restart_after, lambda: self.restart(node_id), label=f"restart {node_id}")

    def restart(self, node_id: str) -> None:
        """Start a fresh incarnation from the factory (crashing the current one first if up)."""
        self.crash(node_id)
        self._boot(node_id)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups, both ways. Adds to existing cuts."""
        sets = [self._node_set(g) for g in groups]
        if len(sets) < 2:
            raise SimulationError("partition needs at least two groups of node ids")
        for i, a in enumerate(sets):
            for j, b in enumerate(sets):
                if i != j:
                    self._blocked.update((x, y) for x in a for y in b if x != y)
        self._trace("partition " + " | ".join(",".join(sorted(s)) for s in sets))

    def partition_oneway(self, senders: Iterable[str], receivers: Iterable[str]) -> None:
        """Drop messages from ``senders`` to ``receivers`` only; the other direction still works."""
        a, b = self._node_set(senders), self._node_set(receivers)
        self._blocked.update((x, y) for x in a for y in b if x != y)
        self._trace(f"partition-oneway {','.join(sorted(a))} -> {','.join(sorted(b))}")

    def isolate(self, node_id: str) -> None:
        """Cut ``node_id`` off from every other node, both ways."""
        others = [n for n in self._nodes if n != node_id]
        if others:
            self.partition([node_id], others)

    def heal(self) -> None:
        """Remove every partition (messages already dropped stay dropped)."""
        self._blocked.clear()
        self._trace("heal")

    def pause(self, node_id: str, duration: float) -> None:
        """Freeze the node (GC/CPU stall): nothing is delivered and no timer fires for ``duration``;
        then everything that arrived or fell due meanwhile is handed over, in arrival order."""
        if not (isinstance(duration, int | float) and math.isfinite(duration) and duration >= 0):
            raise SimulationError(f"pause duration must be finite seconds >= 0, got {duration!r}")
        slot = self._slot(node_id)
        if not slot.up:
            self._trace(f"pause {node_id} ignored (down)")
            return
        until = max(self._now + duration, slot.pause_until if slot.paused else 0.0)
        slot.paused = True
        slot.pause_until = until
        self._trace(f"pause {node_id} until {until:.6f}")
        self._push(until, _Resume(node_id, slot.incarnation, until))

    def after(self, delay: float, fn: Callable[[], object], *, label: str = "call") -> None:
        """Run ``fn()`` at virtual time now + ``delay`` (for scripting faults inside a run)."""
        if not (isinstance(delay, int | float) and math.isfinite(delay) and delay >= 0):
            raise SimulationError(f"after delay must be finite seconds >= 0, got {delay!r}")
        self._push(self._now + delay, _Call(fn, label))

    # ----------------------------------------------------------------- running
    def run_for(self, duration: float) -> None:
        """Process every event due within ``duration`` virtual seconds; the clock ends at now + duration."""
        if not (isinstance(duration, int | float) and math.isfinite(duration) and duration >= 0):
            raise SimulationError(f"run_for duration must be finite seconds >= 0, got {duration!r}")
        end = self._now + duration
        while self._heap and self._heap[0][0] <= end:
            self._step()
        self._now = end

    def run_until(
        self, condition: Callable[[], bool], timeout: float, *, raise_on_timeout: bool = True
    ) -> bool:
        """Step until ``condition()`` holds (checked before and after every event).

        On reaching ``timeout`` virtual seconds: raises :class:`SimulationTimeoutError`, or returns
        False with ``raise_on_timeout=False`` (for asserting that something does *not* happen).
        """
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0):
            raise SimulationError(f"run_until timeout must be finite seconds >= 0, got {timeout!r}")
        end = self._now + timeout
        if condition():
            return True
        while self._heap and self._heap[0][0] <= end:
            self._step()
            if condition():
                return True
        self._now = end
        if raise_on_timeout:
            raise SimulationTimeoutError(
                f"condition not met within {timeout} virtual seconds (t={self._now:.6f}, seed={self.seed})"
            )
        return False

    def step(self) -> bool:
        """Process one event; False if there was none."""
        if not self._heap:
            return False
        self._step()
        return True

    # ----------------------------------------------------------------- internals
    def _slot(self, node_id: str) -> _Slot:
        try:
            return self._nodes[node_id]
        except KeyError:
            known = ", ".join(self._nodes) or "none"
            raise SimulationError(f"unknown node {node_id!r} (known: {known})") from None

    def _node_set(self, group: Iterable[str]) -> frozenset[str]:
        if isinstance(group, str):
            raise SimulationError(f"a group must be a collection of node ids, not the string {group!r}")
        members = frozenset(group)
        for m in sorted(members):
            self._slot(m)
        return members

    def _trace(self, line: str) -> None:
        entry = f"{self._now:.6f} {line}"
        self._trace_hash.update(entry.encode() + b"\n")
        self.trace.append(entry)
        if self.trace_limit is not None and len(self.trace) > 2 * self.trace_limit:
            del self.trace[: len(self.trace) - self.trace_limit]  # amortised: trims in halves

    def _push(self, at: float, event: _Event) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, event))

    def _boot(self, node_id: str) -> None:
        slot = self._nodes[node_id]
        slot.incarnation += 1
        slot.obj = slot.factory()
        rng = derive_rng(self.seed, "node", node_id, slot.incarnation)
        slot.ctx = NodeContext(self, node_id, slot.incarnation, rng, slot.storage)
        slot.up = True
        self._trace(f"boot {node_id}#{slot.incarnation}")
        self._push(self._now, _Start(node_id, slot.incarnation))

    def _is_current(self, ctx: NodeContext) -> bool:
        slot = self._nodes.get(ctx.node_id)
        return slot is not None and slot.up and slot.ctx is ctx

    def _send(self, ctx: NodeContext, dst: str, payload: bytes) -> None:
        if not self._is_current(ctx):
            return
        src = ctx.node_id
        self.stats.sent += 1
        head = _head(src, dst, payload)
        if dst not in self._nodes:
            self.stats.dropped_unknown += 1
            self._trace(f"drop {head} reason=unknown-node")
            return
        if (src, dst) in self._blocked:
            self.stats.dropped_partition += 1
            self._trace(f"drop {head} reason=partition")
            return
        profile = self._links.get((src, dst), self.default_link)
        rng = self._net_rng
        if profile.loss and rng.random() < profile.loss:
            self.stats.dropped_loss += 1
            self._trace(f"drop {head} reason=loss")
            return
        copies = 2 if profile.duplicate and rng.random() < profile.duplicate else 1
        if copies == 2:
            self.stats.duplicated += 1
        for _ in range(copies):
            data = payload
            if profile.corrupt and payload and rng.random() < profile.corrupt:
                bit = rng.randrange(len(payload) * 8)
                mutable = bytearray(payload)
                mutable[bit // 8] ^= 1 << (bit % 8)
                data = bytes(mutable)
                self.stats.corrupted += 1
            at = self._now + profile.draw_delay(rng)
            if profile.fifo:
                at = max(at, self._fifo_last.get((src, dst), 0.0))
                self._fifo_last[(src, dst)] = at
            self._trace(f"send {head} at={at:.6f}" + (" corrupted" if data is not payload else ""))
            self._push(at, _Deliver(src, dst, data, head if data is payload else _head(src, dst, data)))

    def _set_timer(self, ctx: NodeContext, delay: float, tag: str) -> None:
        if not self._is_current(ctx):
            return
        slot = self._nodes[ctx.node_id]
        self._seq += 1
        slot.timers[tag] = self._seq
        event = _Timer(ctx.node_id, ctx.incarnation, tag, self._seq)
        heapq.heappush(self._heap, (self._now + delay, self._seq, event))

    def _cancel_timer(self, ctx: NodeContext, tag: str) -> None:
        if self._is_current(ctx):
            self._nodes[ctx.node_id].timers.pop(tag, None)

    def _log(self, ctx: NodeContext, msg: str) -> None:
        self._trace(f"log {ctx.node_id}: {msg}")

    def _step(self) -> None:
        at, _seq, event = heapq.heappop(self._heap)
        self._now = at
        self.stats.events += 1
        if self.stats.events > self.max_events:
            raise SimulationError(
                f"more than max_events={self.max_events} events (t={at:.6f}, seed={self.seed}): "
                "a livelock, or raise max_events"
            )
        if self._dispatch(event):
            self._check_invariants()

    def _dispatch(self, event: _Event) -> bool:
        """Apply one event; True if it changed anything a node or invariant could see."""
        if isinstance(event, _Deliver):
            return self._deliver(event, from_backlog=False)
        if isinstance(event, _Timer):
            return self._fire(event, from_backlog=False)
        if isinstance(event, _Start):
            slot = self._nodes[event.node]
            if not slot.up or slot.incarnation != event.incarnation:
                return False
            self._trace(f"start {event.node}#{event.incarnation}")
            self._invoke(event.node, "start", lambda obj, ctx: obj.start(ctx))
            return True
        if isinstance(event, _Resume):
            return self._resume(event)
        self._trace(f"call {event.label}")
        event.fn()
        return True

    def _deliver(self, ev: _Deliver, *, from_backlog: bool) -> bool:
        slot = self._nodes[ev.dst]
        head = ev.head
        if not slot.up:
            self.stats.dropped_down += 1
            self._trace(f"drop {head} reason=down")
            return False
        if not from_backlog and (ev.src, ev.dst) in self._blocked:
            self.stats.dropped_partition += 1
            self._trace(f"drop {head} reason=partition")
            return False
        if slot.paused:
            slot.backlog.append(ev)
            self._trace(f"hold {head}")
            return False
        self.stats.delivered += 1
        self._trace(f"recv {head}")
        self._invoke(ev.dst, "receive", lambda obj, ctx: obj.receive(ctx, ev.src, ev.payload))
        return True

    def _fire(self, ev: _Timer, *, from_backlog: bool) -> bool:
        slot = self._nodes[ev.node]
        if not slot.up or slot.incarnation != ev.incarnation or slot.timers.get(ev.tag) != ev.timer_id:
            return False  # cancelled, re-armed or from a dead incarnation
        if slot.paused:
            slot.backlog.append(ev)
            return False
        del slot.timers[ev.tag]
        self.stats.timers_fired += 1
        self._trace(f"timer {ev.node} {ev.tag}")
        self._invoke(ev.node, "timer", lambda obj, ctx: obj.timer(ctx, ev.tag))
        return True

    def _resume(self, ev: _Resume) -> bool:
        slot = self._nodes[ev.node]
        current = slot.up and slot.incarnation == ev.incarnation
        if not current or not slot.paused or slot.pause_until != ev.until:
            return False
        slot.paused = False
        backlog, slot.backlog = slot.backlog, []
        self._trace(f"resume {ev.node} backlog={len(backlog)}")
        self._check_invariants()
        for item in backlog:
            if not slot.up or slot.incarnation != ev.incarnation:
                break  # crashed while draining (by an invariant-free callback); the rest is lost
            if slot.paused:  # paused again while draining: keep the rest, in order
                slot.backlog.append(item)
                continue
            handled = (
                self._deliver(item, from_backlog=True)
                if isinstance(item, _Deliver)
                else self._fire(item, from_backlog=True)
            )
            if handled:
                self._check_invariants()
        return False

    def _invoke(self, node_id: str, what: str, call: Callable[[SimNode, NodeContext], None]) -> None:
        slot = self._nodes[node_id]
        assert slot.obj is not None
        assert slot.ctx is not None
        try:
            call(slot.obj, slot.ctx)
        except Exception as exc:
            exc.add_note(f"in {node_id}.{what} at virtual t={self._now:.6f} (seed={self.seed})")
            raise

    def _check_invariants(self) -> None:
        for name, check in self._invariants:
            try:
                check(self)
            except AssertionError as exc:
                last = self.trace[-1] if self.trace else "(empty trace)"
                raise InvariantError(
                    f"invariant {name!r} failed at t={self._now:.6f} (seed={self.seed}) after [{last}]: {exc}"
                ) from exc
