"""The two faces a simulated node sees: the :class:`SimNode` it implements and its :class:`NodeContext`."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from meshnet.sim._errors import SimulationError

if TYPE_CHECKING:
    from meshnet.sim._simulation import Simulation

__all__ = ["NodeContext", "SimNode"]


@runtime_checkable
class SimNode(Protocol):
    """What the simulator drives. Usually a thin adapter that feeds a sans-I/O core.

    The three callbacks are the only way time passes for a node: it must not sleep, read the wall
    clock, touch sockets or use the global ``random`` module, or the run stops being reproducible.
    """

    def start(self, ctx: NodeContext) -> None:
        """Called once per incarnation (at add time and after every restart)."""

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        """A message from ``src`` arrived."""

    def timer(self, ctx: NodeContext, tag: str) -> None:
        """The timer armed with ``tag`` fired."""


class NodeContext:
    """A node's handle on the simulated world for one incarnation.

    A context outlives nothing: after a crash the old context goes stale and everything sent or
    armed through it is dropped, which models a process that died with buffers in flight.
    ``storage`` is the exception: the same dict is handed to every incarnation (it models disk).
    """

    __slots__ = ("_incarnation", "_node_id", "_sim", "rng", "storage")

    def __init__(
        self,
        sim: Simulation,
        node_id: str,
        incarnation: int,
        rng: random.Random,
        storage: dict[str, Any],
    ) -> None:
        self._sim = sim
        self._node_id = node_id
        self._incarnation = incarnation
        self.rng = rng
        self.storage = storage

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def incarnation(self) -> int:
        """0 for the first start, +1 for every restart."""
        return self._incarnation

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node id ever added to the simulation, in the order added (up or not)."""
        return self._sim.node_ids

    def now(self) -> float:
        """Virtual seconds since the simulation began."""
        return self._sim.now

    def send(self, dst: str, payload: bytes) -> None:
        """Hand ``payload`` to the network for ``dst``; it may be delayed, lost, duplicated."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise SimulationError(f"send payload must be bytes, got {type(payload).__name__}")
        self._sim._send(self, dst, bytes(payload))

    def set_timer(self, delay: float, tag: str) -> None:
        """Fire ``timer(ctx, tag)`` after ``delay`` virtual seconds; re-arming a tag replaces it."""
        if not (isinstance(delay, int | float) and math.isfinite(delay) and delay >= 0):
            raise SimulationError(f"set_timer delay must be finite seconds >= 0, got {delay!r}")
        self._sim._set_timer(self, float(delay), tag)

    def cancel_timer(self, tag: str) -> None:
        """Forget the timer ``tag`` if armed (no error if it is not)."""
        self._sim._cancel_timer(self, tag)

    def log(self, msg: str) -> None:
        """Append a line to the simulation trace (part of the reproducible output)."""
        self._sim._log(self, msg)

    def is_current(self) -> bool:
        """False once the node crashed or restarted after this context was made."""
        return self._sim._is_current(self)
