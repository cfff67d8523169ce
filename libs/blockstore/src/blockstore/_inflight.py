"""One replicated write in flight: settles its :class:`WriteRound` from completion callbacks.

Why callbacks rather than a watcher task per replica: a task (plus its timeout scope) per replica
per write was the largest cost of the replicated write path. Here the replicas' reader tasks
settle the round directly, and one sweeper task per volume (:class:`Deadlines`) times out whatever
is still pending after the operation timeout, instead of a cancel scope per operation.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable

import anyio

from ._replica import Completion
from ._replication import RoundOutcome, WriteRound

__all__ = ["Deadlines", "InflightWrite"]

_PENDING = RoundOutcome.PENDING


class InflightWrite:
    """Targets of one write that have not answered yet.

    ``on_failure(node_id)`` takes a replica that failed (or timed out) out of the write set;
    ``release()`` is called exactly once, when every target answered or timed out (the volume
    leaves the chunk's shared gate then, so an exclusive copy can never overtake this write).
    Whoever needs the outcome either awaits :meth:`wait` or registers :meth:`on_decided` (a
    callback costs no task: the NBD server answers most writes straight from it).
    """

    __slots__ = ("_decided", "_listeners", "_on_failure", "_release", "pending", "round")

    def __init__(
        self,
        round_: WriteRound,
        on_failure: Callable[[str], None],
        release: Callable[[], None],
    ) -> None:
        self.round = round_
        self.pending: set[str] = set()
        self._on_failure = on_failure
        self._release = release
        self._decided: anyio.Event | None = None
        self._listeners: list[Callable[[], None]] | None = None

    def track(self, node_id: str, completion: Completion) -> None:
        """Settle ``node_id`` now if its completion is done, else when it finishes."""
        if completion.done:
            self._settle_result(node_id, completion.error)
            return
        self.pending.add(node_id)
        completion.add_done_callback(functools.partial(self.settle, node_id))

    def _settle_result(self, node_id: str, error: BaseException | None) -> RoundOutcome:
        if error is None:
            return self.round.ack(node_id)
        outcome = self.round.fail(node_id)
        self._on_failure(node_id)
        return outcome

    def settle(self, node_id: str, error: BaseException | None) -> None:
        """A target answered (``error`` None) or failed; late answers after a timeout are ignored."""
        pending = self.pending
        if node_id not in pending:
            return
        pending.discard(node_id)
        if error is None:
            outcome = self.round.ack(node_id)
        else:
            outcome = self.round.fail(node_id)
            self._on_failure(node_id)
        if not pending:
            self._release()
        elif outcome is _PENDING:
            return  # the common answer: others still outstanding, nothing decided
        if outcome is not _PENDING or not pending:
            if self._decided is not None:
                self._decided.set()
            listeners, self._listeners = self._listeners, None
            if listeners:
                for listener in listeners:
                    listener()

    def settled_now(self) -> bool:
        """True when nothing is pending (the gate is then released here)."""
        if self.pending:
            return False
        self._release()
        return True

    def decided(self) -> bool:
        return self.round.outcome is not RoundOutcome.PENDING

    def on_decided(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` once the round is decided (now, if it already is)."""
        if self.round.outcome is not RoundOutcome.PENDING:
            listener()
            return
        if self._listeners is None:
            self._listeners = []
        self._listeners.append(listener)

    def expire(self) -> None:
        """Every target still pending has timed out."""
        for node_id in sorted(self.pending):
            self.settle(node_id, TimeoutError(f"replica {node_id} did not answer in time"))

    async def wait(self) -> None:
        """Until the round is decided (the volume's :class:`Deadlines` expires stragglers)."""
        if self.round.outcome is not RoundOutcome.PENDING:
            return
        self._decided = anyio.Event()
        await self._decided.wait()


class Deadlines:
    """Operations that must finish within ``timeout``; one sweeper task expires the late ones.

    Every operation gets the same timeout, so deadlines arrive in order and a deque is the whole
    timer wheel: ``add`` is an append, and the sweeper (run in the volume's task group) calls each
    ``expire`` whose deadline passed (deadlines are ``time.monotonic()`` seconds). Expiring an
    operation that already finished must be a no-op.
    Timeouts fire between ``timeout`` and ``timeout * (1 + 1/8)`` after ``add``.
    """

    __slots__ = ("_queue", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._queue: deque[tuple[float, Callable[[], None]]] = deque()

    def add(self, expire: Callable[[], None]) -> None:
        # time.monotonic, not anyio.current_time: this runs for every write and remote read, and
        # the backend lookup behind anyio's clock cost more than the rest of this method.
        self._queue.append((time.monotonic() + self.timeout, expire))

    def sweep(self, now: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= now:
            queue.popleft()[1]()

    async def run(self) -> None:
        period = max(self.timeout / 8, 0.002)
        while True:
            await anyio.sleep(period)
            self.sweep(time.monotonic())
