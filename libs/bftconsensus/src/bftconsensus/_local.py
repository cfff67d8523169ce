"""Run a whole commit-reveal execution inside one process (examples, tests, single-host users)."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence

from bftconsensus import _messages as pb
from bftconsensus._actions import CancelTimer, Send, SetTimer
from bftconsensus._coordinator import QuorumRun
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._executor import Executor
from bftconsensus._quorum import QuorumConfig
from bftconsensus._verdict import Verdict
from bftconsensus._wire import Kind, seal

__all__ = ["sign_operation", "execute_in_process"]


def sign_operation(client: Signer, op_id: str, function: str, data: bytes) -> pb.Signed:
    """The client-signed operation a coordinator distributes."""
    return seal(
        client,
        Kind.OPERATION,
        pb.Operation(op_id=op_id, function=function, input=data, client=client.node_id),
    )


def execute_in_process(
    coordinator: Signer,
    keys: KeyDirectory,
    operation: pb.Signed,
    executors: Sequence[Executor],
    *,
    beacon: bytes,
    weights: Mapping[str, int] | None = None,
    config: QuorumConfig | None = None,
    silent: frozenset[str] = frozenset(),
) -> Verdict:
    """Drive a :class:`QuorumRun` against in-process executors with a virtual clock.

    Messages are delivered in order with no delay; timers fire (in deadline order) only when no
    message is in flight. Executors named in ``silent`` never answer. Returns the verdict; the
    caller checks ``verdict.accepted`` (a rejected verdict is a result, not an exception here).
    """
    by_id = {e.signer.node_id: e for e in executors}
    eligible = [(n, (weights or {}).get(n, 1)) for n in sorted(by_id)]
    run = QuorumRun(coordinator, keys, operation, eligible, beacon, config)
    now = 0.0
    timers: list[tuple[float, int, str]] = []
    live: dict[str, float] = {}
    counter = 0
    inbox: deque[tuple[str, str, bytes]] = deque()

    def apply(actions: Sequence[object], origin: str) -> None:
        nonlocal counter
        for a in actions:
            if isinstance(a, Send):
                inbox.append((origin, a.dst, a.frame))
            elif isinstance(a, SetTimer) and origin == coordinator.node_id:
                counter += 1
                live[a.tag] = now + a.delay
                heapq.heappush(timers, (now + a.delay, counter, a.tag))
            elif isinstance(a, CancelTimer):
                live.pop(a.tag, None)

    apply(run.start(now), coordinator.node_id)
    for _ in range(1_000_000):
        if run.verdict is not None:
            return run.verdict
        if inbox:
            src, dst, frame = inbox.popleft()
            if dst == coordinator.node_id:
                apply(run.receive(src, frame, now), dst)
            elif dst in by_id and dst not in silent:
                apply(by_id[dst].receive(src, frame), dst)
            continue
        if not timers:
            break
        when, _, tag = heapq.heappop(timers)
        if live.get(tag) != when:
            continue
        del live[tag]
        now = when
        apply(run.timer(tag, now), coordinator.node_id)
    raise AssertionError("in-process execution did not finish")  # pragma: no cover - bounded loop guard
