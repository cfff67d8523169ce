"""The Primary Spore: the authoritative membership view, held in memory by every Sclerotium.

Authority sits behind `PrimaryAuthority` (the app implements it on etcd; `LocalPrimaryAuthority`
is the single-node implementation shipped here). `PrimaryView` is the in-memory copy a node
follows; it is also the `MembershipOracle` that Latent gossip is validated against, and it
persists as a snapshot file written atomically (temp file, fsync, rename) so a restarted node
starts from the last view it knew.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import anyio
import attrs

from spore._codec import decode_record, encode_record
from spore._errors import DecodeError, RecordRejectedError, SporeError
from spore._pb.spore import v1 as pb
from spore._record import SporeRecord
from spore._validation import NetworkTrust, RecordValidator

__all__ = [
    "LocalPrimaryAuthority",
    "MembershipChange",
    "PrimaryAuthority",
    "PrimarySnapshot",
    "PrimaryView",
    "follow_primary",
]

_MAX_SNAPSHOT_BYTES = 64 << 20


@attrs.frozen
class MembershipChange:
    """One authoritative change: `record` set (joined/updated) or None (removed)."""

    revision: int
    node_id: str
    record: SporeRecord | None


@attrs.frozen
class PrimarySnapshot:
    network_id: str
    revision: int
    members: tuple[SporeRecord, ...]


class PrimaryAuthority(Protocol):
    """Where authoritative membership lives (etcd in the app; strictly consistent).

    When the authority cannot be reached, its methods raise `SporeError`, `OSError` or
    `ConnectionError` (`follow_primary` treats those as "unreachable" and retries)."""

    async def snapshot(self) -> PrimarySnapshot: ...

    async def put(self, record: SporeRecord) -> int:
        """Admit or update a member; returns the new revision."""
        ...

    async def remove(self, node_id: str) -> int: ...

    def watch(self, after_revision: int) -> AsyncIterator[MembershipChange]:
        """Changes with revision > `after_revision`, in order, until cancelled."""
        ...


class LocalPrimaryAuthority:
    """Single-node authority: in memory, one process. For one-node networks, tests and demos."""

    def __init__(self, network_id: str) -> None:
        self.network_id = network_id
        self._revision = 0
        self._members: dict[str, SporeRecord] = {}
        self._log: list[MembershipChange] = []
        self._changed = anyio.Event()

    async def snapshot(self) -> PrimarySnapshot:
        return PrimarySnapshot(self.network_id, self._revision, tuple(self._members.values()))

    async def put(self, record: SporeRecord) -> int:
        if record.network_id != self.network_id:
            raise SporeError(f"record network_id {record.network_id!r} is not {self.network_id!r}")
        self._members[record.node_id] = record
        return self._append(record.node_id, record)

    async def remove(self, node_id: str) -> int:
        self._members.pop(node_id, None)
        return self._append(node_id, None)

    def _append(self, node_id: str, record: SporeRecord | None) -> int:
        self._revision += 1
        self._log.append(MembershipChange(self._revision, node_id, record))
        self._changed.set()
        self._changed = anyio.Event()
        return self._revision

    async def watch(self, after_revision: int) -> AsyncIterator[MembershipChange]:
        seen = after_revision
        while True:
            pending = [c for c in self._log if c.revision > seen]
            for change in pending:
                seen = change.revision
                yield change
            if not pending:
                await self._changed.wait()


class PrimaryView:
    """A node's in-memory copy of the Primary Spore, and the oracle gossip is validated against.

    `reachable` says whether the view is being kept current; while it is False the oracle
    answers None ("cannot tell"), so validated Latent data is the fallback.
    """

    def __init__(self, trust: NetworkTrust, clock: Callable[[], float]) -> None:
        self.trust = trust
        self.validator = RecordValidator(trust, clock)
        self.revision = 0
        self.members: dict[str, SporeRecord] = {}
        self.reachable = False

    def admits(self, record: SporeRecord) -> bool | None:
        if not self.reachable:
            return None
        known = self.members.get(record.node_id)
        return known is not None and known.public_key == record.public_key

    def load_snapshot(self, snap: PrimarySnapshot) -> None:
        """Replace the view; records that fail validation are dropped and counted."""
        members: dict[str, SporeRecord] = {}
        for r in snap.members:
            try:
                self.validator.check(r)
            except RecordRejectedError:
                continue
            members[r.node_id] = r
        self.members, self.revision = members, snap.revision

    def apply(self, change: MembershipChange) -> None:
        if change.revision <= self.revision:
            return
        self.revision = change.revision
        if change.record is None:
            self.members.pop(change.node_id, None)
            return
        try:
            self.validator.check(change.record)
        except RecordRejectedError:
            return
        self.members[change.node_id] = change.record

    def snapshot(self) -> PrimarySnapshot:
        return PrimarySnapshot(self.trust.network_id, self.revision, tuple(self.members.values()))

    def save(self, path: Path) -> None:
        """Atomic write: a crash leaves either the old file or the new one, never a torn one."""
        snap = self.snapshot()
        data = bytes(
            pb.PrimarySnapshot(
                network_id=snap.network_id,
                revision=snap.revision,
                members=[pb.SporeRecord().parse(encode_record(r)) for r in snap.members],
            )
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def restore(self, path: Path) -> bool:
        """Load the last saved view; False if there is none. A corrupt file raises DecodeError."""
        if not path.exists():
            return False
        data = path.read_bytes()
        if len(data) > _MAX_SNAPSHOT_BYTES:
            raise DecodeError(
                f"snapshot {path} is {len(data)} bytes, at most {_MAX_SNAPSHOT_BYTES}", "oversized"
            )
        try:
            m = pb.PrimarySnapshot().parse(data)
            records = tuple(decode_record(bytes(r)) for r in m.members)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"snapshot {path} is corrupt: {type(exc).__name__}") from None
        if m.network_id != self.trust.network_id:
            raise DecodeError(
                f"snapshot {path} is for network {m.network_id!r}, not {self.trust.network_id!r}"
            )
        self.load_snapshot(PrimarySnapshot(m.network_id, m.revision, records))
        return True


async def follow_primary(
    authority: PrimaryAuthority,
    view: PrimaryView,
    snapshot_path: Path | None = None,
    *,
    retry_delay: float = 1.0,
) -> None:
    """Keep `view` current from `authority` forever (run it in a task group; cancel to stop).

    On any authority error the view is marked unreachable (gossip falls back to validated
    Latent data) and the follow restarts from a fresh snapshot after `retry_delay`.
    """
    if snapshot_path is not None:
        view.restore(snapshot_path)
    while True:
        try:
            view.load_snapshot(await authority.snapshot())
            view.reachable = True
            if snapshot_path is not None:
                view.save(snapshot_path)
            async for change in authority.watch(view.revision):
                view.apply(change)
                if snapshot_path is not None:
                    view.save(snapshot_path)
        except (OSError, SporeError, ConnectionError):
            view.reachable = False
            await anyio.sleep(retry_delay)
