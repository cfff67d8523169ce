"""Piggyback dissemination queue and suspicion timers (the two bits of SWIM state with maths)."""

from __future__ import annotations

import math

import attrs

from spore._messages import Update

__all__ = ["BroadcastQueue", "Suspicion"]


@attrs.define
class _Item:
    update: Update
    transmits: int
    order: int


class BroadcastQueue:
    """Updates waiting to be piggybacked, least-transmitted first.

    A newer update about a node replaces the queued one (there is no point spreading a claim the
    node has already superseded). Each update is sent at most `limit` times, the limit given at
    take time because it follows the cluster size and measured loss.
    """

    def __init__(self) -> None:
        self._items: dict[str, _Item] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, update: Update) -> None:
        self._order += 1
        self._items[update.node_id] = _Item(update, 0, self._order)

    def take(self, max_items: int, limit: int) -> list[Update]:
        if not self._items:
            return []
        # Fewest transmissions first; among equals, the newest claim first.
        ranked = sorted(self._items.values(), key=lambda it: (it.transmits, -it.order))[:max_items]
        for item in ranked:
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[item.update.node_id]
        return [item.update for item in ranked]


@attrs.define
class Suspicion:
    """Lifeguard's dynamic suspicion timeout: starts at `max_timeout` and shrinks towards
    `min_timeout` as independent members confirm the suspicion (k confirmations expected)."""

    start: float
    incarnation: int
    min_timeout: float
    max_timeout: float
    expected: int
    confirmations: set[str] = attrs.field(factory=set)

    def confirm(self, from_node: str) -> bool:
        """Count an independent confirmation; False when it is a repeat or beyond k."""
        if from_node in self.confirmations or len(self.confirmations) >= self.expected:
            return False
        self.confirmations.add(from_node)
        return True

    def timeout(self) -> float:
        if self.expected < 1:
            return self.min_timeout
        frac = math.log(len(self.confirmations) + 1) / math.log(self.expected + 1)
        return max(self.min_timeout, self.max_timeout - (self.max_timeout - self.min_timeout) * frac)

    def remaining(self, now: float) -> float:
        return max(0.0, self.start + self.timeout() - now)
