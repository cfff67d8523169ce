"""Requests a :class:`~blockstore.Volume` submitted without yielding, answered later.

:meth:`Volume.begin_write` returns a :class:`PendingWrite`, :meth:`Volume.begin_read` a
:class:`PendingRead`. Both tell a caller when they are done through a callback, so a server can
answer thousands of requests in flight without a task (or a cancel scope) for each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._errors import REPLICA_FAILURES, BlockstoreError
from ._inflight import InflightWrite
from ._remote import RemoteCall, RemoteReplica

if TYPE_CHECKING:
    from ._volume import Volume

__all__ = ["ACKED", "PendingRead", "PendingWrite"]

# What takes a replica out of the set when an operation on it raises it.


class PendingWrite:
    """A write submitted by :meth:`Volume.begin_write`.

    ``done``: already decided (every target in this process); then :meth:`result` raises its
    error, if any. Otherwise ``await wait()`` returns once acknowledged or raises.
    """

    __slots__ = ("_inflight", "_volume", "done")

    def __init__(self, volume: Volume | None, inflight: InflightWrite | None) -> None:
        self._volume = volume
        self._inflight = inflight
        self.done = inflight is None or inflight.settled_now()

    def result(self) -> None:
        if self._volume is not None and self._inflight is not None:
            self._volume._raise_if_failed(self._inflight.round)

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once acknowledged or failed (then :meth:`result` tells which).

        Lets a server reply from the replicas' completion callbacks instead of parking a task on
        every write. The volume's sweeper bounds the wait (a silent replica times out).
        """
        if self._inflight is None:
            callback()
            return
        self._inflight.on_decided(callback)

    async def wait(self) -> None:
        if not self.done and self._volume is not None and self._inflight is not None:
            await self._volume._await_round(self._inflight)
        self.result()


# Every target acknowledged at submission (in-process replicas): nothing to track.
ACKED = PendingWrite(None, None)


class PendingRead:
    """A read submitted to a remote replica by :meth:`Volume.begin_read`.

    Once its callback ran, :meth:`result` gives the verified plaintext, or None when the fast
    path gives up (the replica failed or timed out: it is marked down; or a block failed its
    checksum): then :meth:`Volume.read` serves it, trying other replicas and repairing.
    """

    __slots__ = ("_call", "_count", "_first", "_length", "_node_id", "_skip", "_started", "_volume")

    def __init__(
        self,
        volume: Volume,
        call: RemoteCall,
        node_id: str,
        first: int,
        count: int,
        skip: int,
        length: int,
    ) -> None:
        self._volume = volume
        self._call = call
        self._node_id = node_id
        self._first = first
        self._count = count
        self._skip = skip
        self._length = length
        self._started = time.monotonic()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        self._call.add_done_callback(lambda _error: callback())

    def result(self) -> bytes | None:
        volume = self._volume
        replica = volume._replicas[self._node_id]
        assert isinstance(replica, RemoteReplica)
        try:
            data, records = replica.read_result(self._call, self._count)
        except (*REPLICA_FAILURES, BlockstoreError):
            volume._fail(self._node_id)
            return None
        volume.state.observe(self._node_id, time.monotonic() - self._started)
        if volume._bad_blocks(data, records, self._count):
            return None
        data = volume._open(self._first, data, records, self._count)
        skip = self._skip
        if skip == 0 and len(data) == self._length:
            return data
        return data[skip : skip + self._length]
