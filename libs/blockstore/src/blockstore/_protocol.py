"""Message-level replication protocol, sans-I/O: what the simulator runs with crashes and partitions.

A :class:`FrontEndCore` replicates block writes to storage nodes (:class:`StorageCore`) with the
same decision objects the async :class:`~blockstore.Volume` uses (:class:`WriteRound`,
:class:`ReplicaSetState`, :func:`place_chunk`) and the same rules: submit to every live replica
in order, acknowledge per the :class:`WritePolicy`, drop a replica that times out from the write
set, probe it, and rebuild it block by block under an exclusive gate while writes continue.
A block plays the part of a chunk here; values are integers standing for block contents.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs

from ._errors import InsufficientReplicasError, WireError
from ._placement import StorageNodeInfo, place_chunk
from ._replication import ReplicaHealth, ReplicaSetState, RoundOutcome, WriteRound
from ._spec import WritePolicy

__all__ = ["Send", "SetTimer", "Acked", "Refused", "Action", "FrontEndCore", "StorageCore"]

_WRITE, _ACK, _PING, _PONG, _FETCH, _DATA, _COPY, _COPIED = range(1, 9)
_BODY = struct.Struct("<BIIQQ")  # kind, id/token, block, generation, value


def _encode(kind: int, ident: int = 0, block: int = 0, generation: int = 0, value: int = 0) -> bytes:
    return _BODY.pack(kind, ident, block, generation, value)


def _decode(payload: bytes) -> tuple[int, int, int, int, int]:
    if len(payload) != _BODY.size:
        raise WireError(f"protocol message of {len(payload)} bytes; expected {_BODY.size}")
    kind, ident, block, generation, value = _BODY.unpack(payload)
    if not _WRITE <= kind <= _COPIED:
        raise WireError(f"protocol message kind {kind} is unknown")
    return kind, ident, block, generation, value


@attrs.frozen
class Send:
    dst: str
    payload: bytes


@attrs.frozen
class SetTimer:
    delay: float
    tag: str


@attrs.frozen
class Acked:
    write_id: int
    block: int
    generation: int
    value: int


@attrs.frozen
class Refused:
    write_id: int
    reason: str


Action = Send | SetTimer | Acked | Refused


class StorageCore:
    """A storage node: applies writes and copies in arrival order into ``storage`` (its disk)."""

    def __init__(self, storage: dict[str, Any]) -> None:
        self.blocks: dict[int, tuple[int, int]] = storage.setdefault("blocks", {})

    def receive(self, src: str, payload: bytes) -> list[Action]:
        try:
            kind, ident, block, generation, value = _decode(payload)
        except WireError:
            return []
        if kind == _WRITE:
            self.blocks[block] = (generation, value)
            return [Send(src, _encode(_ACK, ident))]
        if kind == _COPY:
            self.blocks[block] = (generation, value)
            return [Send(src, _encode(_COPIED, ident))]
        if kind == _FETCH:
            generation, value = self.blocks.get(block, (0, 0))
            return [Send(src, _encode(_DATA, ident, block, generation, value))]
        if kind == _PING:
            return [Send(src, _encode(_PONG, ident))]
        return []


@attrs.define
class _Round:
    round: WriteRound
    block: int
    generation: int
    value: int
    reported: bool = False


@attrs.define
class _Copy:
    target: str
    block: int
    source: str = ""
    stage: int = _FETCH


class FrontEndCore:
    """The volume front end as a message-level state machine."""

    def __init__(
        self,
        nodes: Sequence[str],
        blocks: int,
        replicas: int,
        policy: WritePolicy,
        *,
        timeout: float = 0.05,
        probe_interval: float = 0.2,
    ) -> None:
        self._infos = [StorageNodeInfo(n) for n in nodes]
        self.blocks = blocks
        self.replicas = replicas
        self.policy = policy
        self.state = ReplicaSetState(list(nodes), policy)
        self.timeout = timeout
        self.probe_interval = probe_interval
        self.generations = [0] * blocks
        self._placement = [place_chunk("sim", b, self._infos, replicas) for b in range(blocks)]
        self._rounds: dict[int, _Round] = {}
        self._inflight = [0] * blocks
        self._copying: dict[int, _Copy] = {}  # token -> copy; at most one per block
        self._copy_block: dict[int, int] = {}  # block -> token
        self._deferred: dict[int, deque[tuple[int, int]]] = {}
        self._rebuild_queue: dict[str, deque[int]] = {}
        self._next_id = 1
        self.rebuilds_completed = 0

    def placement(self, block: int) -> tuple[str, ...]:
        return self._placement[block]

    def start(self) -> list[Action]:
        return [SetTimer(self.probe_interval, "probe")]

    # -- writes ----------------------------------------------------------------------------------
    def client_write(self, block: int, value: int) -> tuple[int, list[Action]]:
        write_id = self._next_id
        self._next_id += 1
        if block in self._copy_block:  # the block is being rebuilt: wait for its copy
            self._deferred.setdefault(block, deque()).append((write_id, value))
            return write_id, []
        return write_id, self._submit(write_id, block, value)

    def _submit(self, write_id: int, block: int, value: int) -> list[Action]:
        try:
            targets = self.state.write_targets(self._placement[block])
        except InsufficientReplicasError as exc:
            return [Refused(write_id, str(exc))]
        self.generations[block] += 1
        generation = self.generations[block]
        self._rounds[write_id] = _Round(WriteRound(targets, self.policy), block, generation, value)
        self._inflight[block] += 1
        actions: list[Action] = [
            Send(n, _encode(_WRITE, write_id, block, generation, value)) for n in targets
        ]
        actions.append(SetTimer(self.timeout, f"w{write_id}"))
        return actions

    def _settle(self, write_id: int) -> list[Action]:
        r = self._rounds[write_id]
        actions: list[Action] = []
        outcome = r.round.outcome
        if not r.reported and outcome is RoundOutcome.ACKED:
            r.reported = True
            actions.append(Acked(write_id, r.block, r.generation, r.value))
        elif not r.reported and outcome is RoundOutcome.FAILED:
            r.reported = True
            actions.append(Refused(write_id, "too few replicas acknowledged"))
        if not r.round.pending:
            del self._rounds[write_id]
            self._inflight[r.block] -= 1
            if not self._inflight[r.block]:
                actions += self._pump_rebuilds()
        return actions

    # -- failures and rebuild ----------------------------------------------------------------------
    def _fail(self, node: str) -> list[Action]:
        self.state.mark_down(node)
        self._rebuild_queue.pop(node, None)
        actions: list[Action] = []
        for token, copy in list(self._copying.items()):
            if node in (copy.target, copy.source):
                actions += self._end_copy(token, retry=node != copy.target)
        for write_id, r in list(self._rounds.items()):
            if node in r.round.pending:
                r.round.fail(node)
                actions += self._settle(write_id)
        return actions

    def _end_copy(self, token: int, retry: bool) -> list[Action]:
        copy = self._copying.pop(token)
        del self._copy_block[copy.block]
        if retry and copy.target in self._rebuild_queue:
            self._rebuild_queue[copy.target].appendleft(copy.block)
        actions: list[Action] = []
        deferred = self._deferred.pop(copy.block, deque())
        while deferred:
            write_id, value = deferred.popleft()
            actions += self._submit(write_id, copy.block, value)
        return actions + self._pump_rebuilds()

    def _pump_rebuilds(self) -> list[Action]:
        actions: list[Action] = []
        for node, queue in list(self._rebuild_queue.items()):
            if any(c.target == node for c in self._copying.values()):
                continue
            while queue and self._inflight[queue[0]] == 0 and queue[0] not in self._copy_block:
                block = queue.popleft()
                sources = self.state.read_candidates(self._placement[block], exclude=[node])
                if not sources:
                    queue.appendleft(block)
                    break
                token = self._next_id
                self._next_id += 1
                self._copying[token] = _Copy(node, block, sources[0])
                self._copy_block[block] = token
                actions.append(Send(sources[0], _encode(_FETCH, token, block)))
                actions.append(SetTimer(self.timeout, f"c{token}"))
                break
            if not queue and not any(c.target == node for c in self._copying.values()):
                del self._rebuild_queue[node]
                self.state.mark_healthy(node)
                self.rebuilds_completed += 1
        return actions

    # -- events ----------------------------------------------------------------------------------
    def receive(self, src: str, payload: bytes) -> list[Action]:
        try:
            kind, ident, block, generation, value = _decode(payload)
        except WireError:
            return []
        if src not in self.state.health:
            return []
        if kind == _ACK and ident in self._rounds:
            self._rounds[ident].round.ack(src)
            return self._settle(ident)
        if kind == _PONG and self.state.health[src] is ReplicaHealth.DOWN:
            self.state.mark_rebuilding(src)
            self._rebuild_queue[src] = deque(b for b in range(self.blocks) if src in self._placement[b])
            return self._pump_rebuilds()
        copy = self._copying.get(ident)
        if copy is None:
            return []
        if kind == _DATA and copy.stage == _FETCH and src == copy.source:
            copy.stage = _COPY
            return [
                Send(copy.target, _encode(_COPY, ident, block, generation, value)),
                SetTimer(self.timeout, f"c{ident}"),
            ]
        if kind == _COPIED and copy.stage == _COPY and src == copy.target:
            return self._end_copy(ident, retry=False)
        return []

    def timer(self, tag: str) -> list[Action]:
        if tag == "probe":
            actions: list[Action] = [SetTimer(self.probe_interval, "probe")]
            for node in self.state.nodes_in(ReplicaHealth.DOWN):
                actions.append(Send(node, _encode(_PING)))
            return actions
        ident = int(tag[1:])
        if tag[0] == "w" and ident in self._rounds:
            actions = []
            for node in list(self._rounds.get(ident, _EMPTY).round.pending):
                actions += self._fail(node)
            return actions
        if tag[0] == "c" and ident in self._copying:
            copy = self._copying[ident]
            return self._fail(copy.source if copy.stage == _FETCH else copy.target)
        return []


_EMPTY = _Round(WriteRound((), WritePolicy()), 0, 0, 0)
