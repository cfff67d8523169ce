"""The backup's core (sans-I/O): a passive replica, acknowledgements, failover election, seeding.

The replica is the region image plus a version tag per page; a page is applied only when its tag
is newer, so duplicated, reordered or re-sent batches are harmless. The watermark (every write up
to it is applied here) comes from the primary, which alone knows which versions are missing.

Failover: after ``failover_timeout`` without a frame from the primary the backup starts an
election among the backups the primary last listed, exchanging ``Status`` until it has heard all
of them or ``election_timeout`` passed; the highest watermark wins (least lag; ties: lowest node
id) and is promoted. Exactly one winner needs the backups to hear each other; fencing against a
partitioned-but-alive primary is the app's job (Primary Spore), see docs/dram.md.
"""

from __future__ import annotations

import array
import enum
from collections.abc import Iterable

from ._actions import Action, FollowPrimary, Promote, ReplicationConfig, Send
from ._errors import DramDecodeError, DramStateError
from ._pb.dram.v1 import Ack, Heartbeat, HeartbeatAck, Join, PageBatch, SeedChunk, SeedRequest, Status
from ._wire import WireLimits, decode, encode, pack_u64, unpack_u64

__all__ = ["BackupCore", "BackupState", "choose_promotion"]


class BackupState(enum.Enum):
    SEEDING = "seeding"
    FOLLOWING = "following"
    ELECTING = "electing"
    PROMOTED = "promoted"


def choose_promotion(watermarks: dict[str, int]) -> str:
    """The least-lagging replica: highest watermark, ties broken by the lowest node id."""
    if not watermarks:
        raise DramStateError("no replica to promote")
    return min(watermarks, key=lambda n: (-watermarks[n], n))


class BackupCore:
    """One passive replica. ``image`` is a writable buffer of region_pages x page_size bytes."""

    def __init__(
        self,
        node_id: str,
        image: memoryview,
        page_size: int,
        config: ReplicationConfig | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        if len(image) % page_size:
            raise DramStateError(f"image size {len(image)} is not a multiple of page_size {page_size}")
        self.node_id = node_id
        self.image = image
        self.page_size = page_size
        self.pages = len(image) // page_size
        self.config = config or ReplicationConfig()
        self.limits = WireLimits(self.pages, page_size)
        self.tags = array.array("Q", bytes(8 * self.pages))
        self.watermark = 0
        self.epoch = 0
        self.state = BackupState.FOLLOWING
        self.primary: str | None = None
        self.peers: tuple[str, ...] = ()
        self.last_heard = now
        self.applied_pages = 0
        self._election_started = 0.0
        self._statuses: dict[str, int] = {}
        self._seed_pending: dict[tuple[int, int], str] = {}
        self._seed_queue: list[tuple[int, int]] = []
        self._seed_sources: list[str] = []
        self._seed_join: str | None = None
        self._seed_progress_at = now

    # ---- replication -------------------------------------------------------------------------
    def receive(self, src: str, frame: bytes, now: float) -> list[Action]:
        """A frame from ``src`` (primary connection, peer backup or seeding source)."""
        try:
            f = decode(frame, self.limits)
        except DramDecodeError:
            return []  # the driver closes the stream; the core just ignores garbage
        msg = f.message
        if isinstance(msg, PageBatch):
            if self.state is BackupState.PROMOTED:
                return []
            self._heard_primary(src, now)
            self._apply(unpack_u64(msg.pages, "pages"), unpack_u64(msg.tags, "tags"), f.payload)
            self.watermark = max(self.watermark, msg.watermark)
            return [Send(src, encode(Ack(batch_id=msg.batch_id, echo_sent_at=msg.sent_at)))]
        if isinstance(msg, Heartbeat):
            return self._heartbeat(src, msg, now)
        if isinstance(msg, Status):
            return self._status(src, msg, now)
        if isinstance(msg, SeedRequest):
            ps = self.page_size
            first, count = msg.first_page, msg.count
            chunk = SeedChunk(first_page=first, tags=pack_u64(self.tags[first : first + count]))
            return [Send(src, encode(chunk, self.image[first * ps : (first + count) * ps]))]
        if isinstance(msg, SeedChunk):
            return self._seed_chunk(src, msg, f.payload, now)
        return []

    def _apply(self, pages: Iterable[int], tags: array.array[int], payload: memoryview) -> None:
        ps = self.page_size
        for i, (page, tag) in enumerate(zip(pages, tags, strict=True)):
            if tag > self.tags[page]:
                self.image[page * ps : (page + 1) * ps] = payload[i * ps : (i + 1) * ps]
                self.tags[page] = tag
                self.applied_pages += 1

    def _heard_primary(self, src: str, now: float) -> None:
        self.last_heard = now
        if self.state is BackupState.ELECTING:
            self.state = BackupState.FOLLOWING  # false alarm: the primary is alive
        if self.primary is None:
            self.primary = src

    def _heartbeat(self, src: str, msg: Heartbeat, now: float) -> list[Action]:
        if msg.epoch < self.epoch or self.state is BackupState.PROMOTED:
            return []
        actions: list[Action] = [Send(src, encode(HeartbeatAck(echo_sent_at=msg.sent_at)))]
        if self.state is BackupState.SEEDING:
            return actions
        if msg.epoch > self.epoch:
            # a promoted replica now leads: adopt it; the Join below makes it resend the difference
            self.epoch = msg.epoch
            self.watermark = 0
            self.primary = src
            self.state = BackupState.FOLLOWING
            actions.append(FollowPrimary(src, msg.epoch))
        self._heard_primary(src, now)
        self.peers = tuple(b for b in msg.backups if b != self.node_id)
        if self.node_id in msg.backups:
            self.watermark = max(self.watermark, msg.watermark)
        else:
            # not (yet) a member: (re)send our tags; repeated per heartbeat until the Join lands
            actions.append(Send(src, encode(Join(tags=pack_u64(self.tags)))))
        return actions

    # ---- failover ----------------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        lost = self.primary is not None and now - self.last_heard > self.config.failover_timeout
        if self.state is BackupState.FOLLOWING and lost:
            self.state = BackupState.ELECTING
            self._election_started = now
            self._statuses = {}
        if self.state is BackupState.SEEDING:
            if self._seed_pending and now - self._seed_progress_at > self.config.ack_timeout:
                self.seed_retry()  # a request or chunk was lost, or a source died: ask again
                self._seed_progress_at = now
            return self._seed_more()
        if self.state is not BackupState.ELECTING:
            return []
        actions: list[Action] = [self._status_to(p) for p in self.peers]
        heard_all = all(p in self._statuses for p in self.peers)
        if heard_all or now - self._election_started >= self.config.election_timeout:
            winner = choose_promotion({self.node_id: self.watermark, **self._statuses})
            if winner == self.node_id:
                self.state = BackupState.PROMOTED
                self.epoch += 1
                actions.append(Promote(self.watermark, self.epoch))
        return actions

    def _status_to(self, peer: str) -> Send:
        promoted = self.state is BackupState.PROMOTED
        return Send(peer, encode(Status(watermark=self.watermark, promoted=promoted, epoch=self.epoch)))

    def _status(self, src: str, msg: Status, now: float) -> list[Action]:
        if msg.promoted and msg.epoch > self.epoch and self.state is not BackupState.PROMOTED:
            return []  # its heartbeat (higher epoch) makes us follow it
        if self.state is BackupState.PROMOTED:
            return [self._status_to(src)]
        quiet = self.primary is not None and now - self.last_heard > self.config.failover_timeout / 2
        if self.state is BackupState.FOLLOWING and quiet:
            self.state = BackupState.ELECTING  # a peer lost the primary too: join the election
            self._election_started = now
            self._statuses = {}
        self._statuses[src] = msg.watermark
        return [self._status_to(src)] if self.state is BackupState.ELECTING else []

    # ---- seeding a new replica from existing ones, in parallel -------------------------------
    def start_seeding(
        self, sources: list[str], join: str, chunk_pages: int = 256, now: float = 0.0
    ) -> list[Action]:
        """Pull the whole image from ``sources`` (split across them), then Join primary ``join``."""
        if not sources:
            raise DramStateError("seeding needs at least one source replica")
        self.state = BackupState.SEEDING
        self._seed_sources = list(sources)
        self._seed_join = join
        self._seed_queue = [(p, min(chunk_pages, self.pages - p)) for p in range(0, self.pages, chunk_pages)]
        self._seed_pending = {}
        self._seed_progress_at = now
        return self._seed_more()

    def _seed_more(self) -> list[Action]:
        actions: list[Action] = []
        busy = set(self._seed_pending.values())
        for src in self._seed_sources:
            if src in busy or not self._seed_queue:
                continue
            rng = self._seed_queue.pop(0)
            self._seed_pending[rng] = src
            actions.append(Send(src, encode(SeedRequest(first_page=rng[0], count=rng[1]))))
        if not self._seed_queue and not self._seed_pending and self._seed_join is not None:
            join, self._seed_join = self._seed_join, None
            self.state = BackupState.FOLLOWING
            self.primary = join
            actions.append(Send(join, encode(Join(tags=pack_u64(self.tags)))))
        return actions

    def seed_retry(self) -> None:
        """Re-queue every outstanding seed request (a source died or a frame was lost)."""
        self._seed_queue[:0] = list(self._seed_pending)
        self._seed_pending = {}

    def _seed_chunk(self, src: str, msg: SeedChunk, payload: memoryview, now: float) -> list[Action]:
        tags = unpack_u64(msg.tags, "tags")
        rng = (msg.first_page, len(tags))
        if self._seed_pending.get(rng) != src:
            return []
        del self._seed_pending[rng]
        self._seed_progress_at = now
        self._apply(range(msg.first_page, msg.first_page + len(tags)), tags, payload)
        return self._seed_more()
