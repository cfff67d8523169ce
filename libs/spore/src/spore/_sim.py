"""Adapter that runs a `LatentSpore` core as a `meshnet.sim` node (structurally a `SimNode`).

It is the simulator's "driver": the same few lines the anyio driver has, with the simulated
clock, RNG, network and timers. A restart builds a fresh core (state lost, as in a real crash);
the default incarnation follows the clock, so the restarted node out-bids its previous life.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from spore._gossip import LatentSpore
from spore._gossip_config import GossipConfig
from spore._gossip_events import (
    Action,
    CancelTimer,
    Event,
    Join,
    MemberChanged,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from spore._identity import Signer
from spore._record import Role
from spore._validation import NetworkTrust

__all__ = ["LatentSimNode"]


class _Context(Protocol):
    """The part of meshnet.sim's NodeContext this adapter uses."""

    rng: random.Random

    @property
    def node_id(self) -> str: ...
    def now(self) -> float: ...
    def send(self, dst: str, payload: bytes) -> None: ...
    def set_timer(self, delay: float, tag: str) -> None: ...
    def cancel_timer(self, tag: str) -> None: ...


class LatentSimNode:
    """A SimNode feeding one `LatentSpore`. `on_change(now, observer, change)` sees every
    membership change (tests and benchmarks measure detection and convergence with it)."""

    def __init__(
        self,
        signer: Signer,
        trust: NetworkTrust,
        *,
        config: GossipConfig | None = None,
        contacts: tuple[str, ...] = (),
        role: Role = Role.RHIZOMORPH,
        network_signer: Signer | None = None,
        on_change: Callable[[float, str, MemberChanged], None] | None = None,
    ) -> None:
        self._signer = signer
        self._trust = trust
        self._config = config
        self._contacts = contacts
        self._role = role
        self._network_signer = network_signer
        self._on_change = on_change
        self.core: LatentSpore | None = None

    def start(self, ctx: _Context) -> None:
        self.core = LatentSpore(
            self._signer,
            self._trust,
            clock=ctx.now,
            rng=ctx.rng,
            config=self._config,
            role=self._role,
            network_signer=self._network_signer,
        )
        self._feed(ctx, Start(self._contacts))

    def receive(self, ctx: _Context, src: str, payload: bytes) -> None:
        self._feed(ctx, Received(src, payload))

    def timer(self, ctx: _Context, tag: str) -> None:
        self._feed(ctx, TimerFired(tag))

    def join(self, ctx: _Context, contacts: tuple[str, ...]) -> None:
        self._feed(ctx, Join(contacts))

    def _feed(self, ctx: _Context, event: Event) -> None:
        assert self.core is not None
        self._apply(ctx, self.core.handle(event))

    def _apply(self, ctx: _Context, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                ctx.send(a.dst, a.data)
            elif isinstance(a, SetTimer):
                ctx.set_timer(a.delay, a.tag)
            elif isinstance(a, CancelTimer):
                ctx.cancel_timer(a.tag)
            elif isinstance(a, MemberChanged) and self._on_change is not None:
                self._on_change(ctx.now(), ctx.node_id, a)
