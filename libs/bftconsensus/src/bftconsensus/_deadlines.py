"""Named timers served by one task, for the anyio drivers.

A replica re-arms its view-change timer after every executed batch and a client arms one per
request. A task and a cancel scope per timer (anyio formats the cancelled task's repr on every
cancel) cost more than the work they guard; here setting or cancelling a timer is a dict write,
and the one task wakes only when the earliest deadline moves earlier or comes due.

Deadlines are read on ``time.monotonic``, not ``anyio.current_time``: only their differences
reach anyio (as the time to sleep), and anyio's clock costs a backend lookup per call (~3% of a
busy primary, which re-arms its batch timer at every request it holds a batch for).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio

__all__ = ["Deadlines"]


class Deadlines:
    """``set(name, delay)``, ``cancel(name)``; ``run()`` calls ``fire(name)`` when one is due."""

    def __init__(self, fire: Callable[[str], None]) -> None:
        self._fire = fire
        self._due: dict[str, float] = {}
        self._wake = anyio.Event()
        self._next = math.inf  # when run() will look next

    def set(self, name: str, delay: float) -> None:
        """Arm ``name`` to fire ``delay`` seconds from now (re-arming replaces the deadline)."""
        when = time.monotonic() + delay
        self._due[name] = when
        if when < self._next:
            self._wake.set()

    def cancel(self, name: str) -> None:
        self._due.pop(name, None)

    def pending(self, name: str) -> bool:
        return name in self._due

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            for name in [n for n, when in self._due.items() if when <= now]:
                when = self._due.get(name)
                if when is None or when > now:
                    continue  # cancelled or re-armed by a timer that fired before it in this pass
                del self._due[name]
                self._fire(name)  # may set() or cancel() others: the next deadline is computed after
            self._next = min(self._due.values(), default=math.inf)
            self._wake = anyio.Event()
            if self._next == math.inf:
                await self._wake.wait()
            else:
                with anyio.move_on_after(self._next - time.monotonic()):
                    await self._wake.wait()
