"""The membership half of the Latent Spore core: the member table and how claims merge into it.

SWIM's rules for combining claims (memberlist's aliveNode/suspectNode/deadNode): a higher
incarnation wins; SUSPECT and DEAD apply at an incarnation at least the member's; a claim about
ourselves is refuted by re-signing our record with a higher incarnation. Every ALIVE claim is the
member's signed record and is validated before it is merged. `LatentSpore` (in `_gossip`) adds
the protocol that produces these claims: probing, timers and dissemination.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable

import attrs

from spore._broadcast import BroadcastQueue, Suspicion
from spore._errors import RecordRejectedError
from spore._gossip_config import GossipConfig
from spore._gossip_events import Action, CancelTimer, GossipStats, MemberChanged, SetTimer
from spore._identity import Signer
from spore._messages import MemberState, Update
from spore._partition import ReachabilityTracker
from spore._record import Capabilities, Role, SporeRecord, build_record
from spore._validation import MembershipOracle, NetworkTrust, RecordValidator

__all__ = ["Member", "Membership"]

_MAX_DEPARTED = 4096  # failed members remembered for reconnection (bounded memory)
# Enum member lookups are slow in 3.11 and these are on every merge: bind them once.
_ALIVE, _SUSPECT, _DEAD, _LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
_LIVE = (_ALIVE, _SUSPECT)


@attrs.define
class Member:
    record: SporeRecord
    state: MemberState
    incarnation: int
    since: float


class Membership:
    """One node's member table for one network, with SWIM's merge rules."""

    def __init__(
        self,
        signer: Signer,
        trust: NetworkTrust,
        *,
        clock: Callable[[], float],
        rng: random.Random,
        config: GossipConfig | None = None,
        role: Role = Role.RHIZOMORPH,
        addresses: tuple[str, ...] = (),
        capabilities: Capabilities | None = None,
        services: tuple[str, ...] = (),
        incarnation: int | None = None,
        network_signer: Signer | None = None,
        oracle: MembershipOracle | None = None,
    ) -> None:
        self.config = config or GossipConfig()
        self.trust = trust
        self._signer = signer
        self._network_signer = network_signer
        self._clock = clock
        self._rng = rng
        self.node_id = trust.node_id_for(signer.public_key)
        self._role, self._addresses, self._services = role, addresses, services
        self._capabilities = capabilities or Capabilities()
        # Default: milliseconds of the injected clock, so a restarted node (which lost its state)
        # still signs incarnations above those of its previous life.
        self.record = self._sign(int(clock() * 1000) if incarnation is None else incarnation)
        self.validator = RecordValidator(trust, clock, oracle)
        self.members: dict[str, Member] = {}
        self._live = 0  # members ALIVE or SUSPECT, kept in step so cluster_size() is O(1)
        # The member ids as a list (and each one's index) for O(1) uniform picks (gossip targets).
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._state_updates: dict[str, Update] = {}  # _full_state's per-member Update, reused
        self.stats = GossipStats(rejected=self.validator.rejected)
        self.awareness = 0
        self.leaving = False
        self.reachability = ReachabilityTracker(self.node_id)
        self._queue = BroadcastQueue()
        self._suspicions: dict[str, Suspicion] = {}
        self._probe_order: list[str] = []
        self._departed: OrderedDict[str, tuple[SporeRecord, float]] = OrderedDict()

    def alive(self) -> list[str]:
        return [n for n, m in self.members.items() if m.state is _ALIVE]

    def state_of(self, node_id: str) -> MemberState | None:
        m = self.members.get(node_id)
        return m.state if m is not None else None

    def cluster_size(self) -> int:
        """Estimated live cluster size including ourselves (drives the adaptive parameters)."""
        return 1 + self._live

    def address_of(self, node_id: str) -> str | None:
        """First advertised address of a member (or of a failed member we may reconnect to)."""
        m = self.members.get(node_id)
        record = m.record if m is not None else self._departed.get(node_id, (None, 0.0))[0]
        return record.addresses[0] if record is not None and record.addresses else None

    def _sign(self, incarnation: int) -> SporeRecord:
        return build_record(
            self._signer,
            network_id=self.trust.network_id,
            role=self._role,
            addresses=self._addresses,
            capabilities=self._capabilities,
            services=self._services,
            incarnation=incarnation,
            expires_at=self._clock() + self.config.record_ttl,
            network_signer=self._network_signer,
            node_id=self.node_id,
        )

    def _alive_update(self) -> Update:
        return Update(_ALIVE, self.node_id, self.record.incarnation, self.record, self.node_id)

    def _set_state(self, m: Member, state: MemberState, incarnation: int, out: list[Action]) -> None:
        changed = m.state is not state
        self._live += (state in _LIVE) - (m.state in _LIVE)
        m.state, m.incarnation = state, incarnation
        if changed:
            m.since = self._clock()
            out.append(MemberChanged(m.record.node_id, state, m.record))

    def _refute(self, incarnation: int) -> None:
        """Someone claims we are suspect/dead at `incarnation`: out-bid it with a new record."""
        self.record = self._sign(max(self.record.incarnation, incarnation) + 1)
        self._queue.push(self._alive_update())
        self.stats.refutations += 1
        self.awareness = min(self.awareness + 1, self.config.awareness_max_multiplier - 1)

    def _full_state(self) -> tuple[Update, ...]:
        states = [self._alive_update()]
        cache = self._state_updates
        for node_id, m in self.members.items():
            # Reuse the Update built last time while the member is unchanged: a push/pull at
            # N = 1000 is 1000 updates, and building them was a tenth of the simulator's time.
            u = cache.get(node_id)
            if (
                u is None
                or u.state is not m.state
                or u.incarnation != m.incarnation
                or u.record is not m.record
            ):
                u = cache[node_id] = Update(m.state, node_id, m.incarnation, m.record, self.node_id)
            states.append(u)
        if len(cache) > 2 * len(self.members) + 64:
            self._state_updates = {n: u for n, u in cache.items() if n in self.members}
        return tuple(states)

    def _merge_remote_state(self, u: Update, src: str, out: list[Action]) -> None:
        """memberlist's push/pull merge: a remote DEAD only makes us suspect (we check ourselves)."""
        if u.record is None:
            return
        if u.state in _LIVE:
            self._merge_alive(u.record, src, out)
        if (
            u.state is _SUSPECT
            or (u.state is _DEAD and u.node_id in self.members)
            or (u.state is _DEAD and u.node_id == self.node_id)
        ):
            self._merge_suspect(u.node_id, u.incarnation, src, out)
        elif u.state is _LEFT:
            self._merge_dead(u.node_id, u.incarnation, _LEFT, out)

    def _merge(self, u: Update, src: str, out: list[Action]) -> None:
        if u.state is _ALIVE:
            assert u.record is not None  # the decoder guarantees it
            self._merge_alive(u.record, src, out)
        elif u.state is _SUSPECT:
            self._merge_suspect(u.node_id, u.incarnation, u.from_node or src, out)
        else:
            self._merge_dead(u.node_id, u.incarnation, u.state, out)

    def _merge_alive(self, record: SporeRecord, src: str, out: list[Action]) -> None:
        if record.node_id == self.node_id:
            # Our own record from a previous life (we restarted): out-bid it.
            if record.incarnation > self.record.incarnation and record.public_key == self.record.public_key:
                self._refute(record.incarnation)
            return
        member = self.members.get(record.node_id)
        if member is not None and record.incarnation <= member.incarnation:
            # Nothing new: skip the (memoised but not free) signature check. An older
            # incarnation is still counted, and is a replay if the node itself sent it.
            if record.incarnation < member.incarnation:
                self.validator.count_stale(record, src)
            return
        try:
            self.validator.check(record, sender=src)
        except RecordRejectedError:
            return
        self.validator.accept(record)
        if member is None:
            self._departed.pop(record.node_id, None)
            member = Member(record, _ALIVE, record.incarnation, self._clock())
            self.members[record.node_id] = member
            self._live += 1
            self._index[record.node_id] = len(self._ids)
            self._ids.append(record.node_id)
            self._probe_order.insert(self._rng.randrange(len(self._probe_order) + 1), record.node_id)
            out.append(MemberChanged(record.node_id, _ALIVE, record))
        else:
            if member.state is _SUSPECT:
                self.stats.suspicions_refuted += 1
            member.record = record
            self._suspicions.pop(record.node_id, None)
            out.append(CancelTimer(f"suspect:{record.node_id}"))
            self._set_state(member, _ALIVE, record.incarnation, out)
        self._queue.push(Update(_ALIVE, record.node_id, record.incarnation, record, src))

    def _merge_suspect(self, node_id: str, incarnation: int, from_node: str, out: list[Action]) -> None:
        if node_id == self.node_id:
            if not self.leaving and incarnation >= self.record.incarnation:
                self._refute(incarnation)
            return
        m = self.members.get(node_id)
        if m is None or incarnation < m.incarnation or m.state in (_DEAD, _LEFT):
            return
        if m.state is _SUSPECT:
            s = self._suspicions.get(node_id)
            if s is not None and from_node != self.node_id and s.confirm(from_node):
                out.append(SetTimer(f"suspect:{node_id}", s.remaining(self._clock())))
                self._queue.push(Update(_SUSPECT, node_id, incarnation, None, from_node))
            return
        n = self.cluster_size()
        lo, hi = self.config.suspicion_bounds(n)
        k = self.config.suspicion_mult - 2
        s = Suspicion(self._clock(), incarnation, lo, hi, k if n - 2 >= k else 0)
        self._suspicions[node_id] = s
        self._set_state(m, _SUSPECT, incarnation, out)
        out.append(SetTimer(f"suspect:{node_id}", s.remaining(self._clock())))
        self._queue.push(Update(_SUSPECT, node_id, incarnation, None, from_node))

    def _merge_dead(self, node_id: str, incarnation: int, state: MemberState, out: list[Action]) -> None:
        if node_id == self.node_id:
            if not self.leaving and incarnation >= self.record.incarnation:
                self._refute(incarnation)
            return
        m = self.members.get(node_id)
        if m is None or incarnation < m.incarnation or m.state in (_DEAD, _LEFT):
            return
        self._suspicions.pop(node_id, None)
        out.append(CancelTimer(f"suspect:{node_id}"))
        self._set_state(m, state, incarnation, out)
        self._queue.push(Update(state, node_id, incarnation, None, self.node_id))

    def _suspicion_expired(self, node_id: str, out: list[Action]) -> None:
        s = self._suspicions.pop(node_id, None)
        m = self.members.get(node_id)
        if s is None or m is None or m.state is not _SUSPECT or m.incarnation != s.incarnation:
            return
        self.stats.declared_dead += 1
        self._set_state(m, _DEAD, m.incarnation, out)
        self._queue.push(Update(_DEAD, node_id, m.incarnation, None, self.node_id))

    def _forget_id(self, node_id: str) -> None:
        i = self._index.pop(node_id)
        last = self._ids.pop()
        if last != node_id:  # swap-remove: the last id takes the freed slot
            self._ids[i] = last
            self._index[last] = i

    def _reap(self) -> None:
        """Forget DEAD/LEFT members after `gossip_to_the_dead_time` (the validator keeps their
        highest incarnation, so a stale ALIVE cannot resurrect them)."""
        now = self._clock()
        horizon = self.config.gossip_to_the_dead_time
        gone = [n for n, m in self.members.items() if m.state in (_DEAD, _LEFT) and now - m.since >= horizon]
        for n in gone:
            m = self.members.pop(n)
            self._forget_id(n)
            self.reachability.forget(n)
            if m.state is _DEAD:
                self._departed[n] = (m.record, now)
                while len(self._departed) > _MAX_DEPARTED:
                    self._departed.popitem(last=False)
