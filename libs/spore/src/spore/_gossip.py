"""The Latent Spore: SWIM membership with Lifeguard, as a sans-I/O state machine.

`LatentSpore.handle(event) -> list[Action]` is the whole interface: feed it received bytes and
fired timers, carry out the sends and timers it returns. Time and randomness are injected, so the
same code runs under the deterministic simulator, in tests and behind the anyio driver.

Protocol (SWIM, Das et al. 2002, with memberlist's and Lifeguard's refinements):
- every probe period, ping the next member (round-robin over a shuffled list); without an ack
  after `probe_timeout`, ask `indirect_checks` members to ping it (they nack if they hear
  nothing); without any ack by the end of the period, suspect it;
- a suspicion becomes a death after a timeout that starts long and shrinks as independent
  members confirm it; the suspect refutes by re-signing its record with a higher incarnation;
- claims (alive/suspect/dead) ride piggybacked on every message and on a fast gossip round;
  full state is exchanged by push/pull periodically and on join;
- local health (Lifeguard): failed probes and missed nacks slow our own probing down, so an
  overloaded node does not accuse healthy ones.
Every ALIVE claim is the member's own signed record; records are validated before merging.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import attrs

from spore._codec import decode_envelope, encode_envelope
from spore._errors import DecodeError
from spore._gossip_config import GossipConfig
from spore._gossip_events import (
    Action,
    CancelTimer,
    ConfirmPeer,
    Event,
    Join,
    Leave,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from spore._identity import Signer
from spore._membership import Member, Membership
from spore._messages import Ack, Body, Envelope, MemberState, Nack, Ping, PingReq, PushPull, Update
from spore._partition import PartitionReport
from spore._record import Capabilities, Role
from spore._validation import MembershipOracle, NetworkTrust

__all__ = ["LatentSpore", "Member"]

_SEQ_MOD = 2**32
# Enum member lookups are slow in 3.11 and these are on every merge: bind them once.
_ALIVE, _SUSPECT, _DEAD, _LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
_LIVE = (_ALIVE, _SUSPECT)
_LOSS_ALPHA = 0.1  # EWMA weight of one direct-probe outcome in the measured loss


@attrs.define
class _Probe:
    seq: int
    target: str
    acked: bool = False
    direct: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@attrs.define
class _Relay:
    requester: str
    seq: int
    nacked: bool = False


class LatentSpore(Membership):
    """One node's SWIM membership view of one network, and the protocol that keeps it current."""

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
        super().__init__(
            signer, trust, clock=clock, rng=rng, config=config, role=role, addresses=addresses,
            capabilities=capabilities, services=services, incarnation=incarnation,
            network_signer=network_signer, oracle=oracle,
        )  # fmt: skip
        self.loss = 0.0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = rng.randrange(_SEQ_MOD)
        self._join_contacts: tuple[str, ...] = ()
        self._join_attempts = 0
        self._pulled: dict[str, float] = {}

    def partition_report(self) -> PartitionReport:
        """Which members our own probes reach directly, and which not, since when."""
        return self.reachability.report(self._clock())

    def handle(self, event: Event) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, Received):
            self._on_received(event.src, event.data, out)
        elif isinstance(event, TimerFired):
            self._on_timer(event.tag, out)
        elif isinstance(event, Start):
            self._queue.push(self._alive_update())
            out += [
                SetTimer("probe", self._rng.uniform(0, self.config.probe_interval)),
                SetTimer("gossip", self._rng.uniform(0, self.config.gossip_interval)),
                SetTimer("push_pull", self.config.push_pull_interval * self._rng.uniform(0.5, 1.0)),
                SetTimer("refresh", self.config.record_ttl / 2),
                SetTimer("reap", self.config.gossip_to_the_dead_time / 2),
            ]
            if event.contacts:
                self._join(event.contacts, out)
        elif isinstance(event, Join):
            self._join(event.contacts, out)
        elif isinstance(event, Leave):
            self.leaving = True
            self._queue.push(Update(_LEFT, self.node_id, self.record.incarnation, None, self.node_id))
            self._gossip_round(out)
        elif isinstance(event, ConfirmPeer):
            self.validator.confirm(event.node_id)
        return out

    def _scaled(self, t: float) -> float:
        return t * (self.awareness + 1)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % _SEQ_MOD
        return self._seq

    def _send(self, dst: str, body: Body | None, out: list[Action], piggyback: bool = True) -> None:
        updates: tuple[Update, ...] = ()
        if piggyback:
            limit = self.config.retransmit_limit(self.cluster_size(), self.loss)
            updates = tuple(self._queue.take(self.config.max_piggyback, limit))
        data = encode_envelope(Envelope(self.trust.network_id, self.node_id, body, updates))
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        out.append(Send(dst, data))

    def _join(self, contacts: tuple[str, ...], out: list[Action]) -> None:
        self._join_contacts = contacts
        self._join_attempts = 0
        self._push_pull_join(out)

    def _push_pull_join(self, out: list[Action]) -> None:
        states = (self._alive_update(),)
        for contact in self._join_contacts:
            if contact != self.node_id:
                self._send(contact, PushPull(join=True, reply=False, states=states), out, piggyback=False)
        self._join_attempts += 1
        out.append(SetTimer("join", min(30.0, self.config.probe_interval * 2**self._join_attempts)))

    def _on_received(self, src: str, data: bytes, out: list[Action]) -> None:
        self.stats.messages_received += 1
        self.stats.bytes_received += len(data)
        try:
            env = decode_envelope(data, self.config.limits)
        except DecodeError as exc:
            self.validator.count_undecodable(exc.reason, src)
            return
        if env.network_id != self.trust.network_id:
            self.validator.count_undecodable("wrong_network", src)
            return
        if env.sender != src:
            self.validator.count_undecodable("malformed", src)
            return
        body = env.body
        if isinstance(body, Ping):
            if body.target == self.node_id:
                self._send(src, Ack(body.seq), out)
                self._pull_from_stranger(src, out)
        elif isinstance(body, Ack):
            self._on_ack(src, body.seq, out)
        elif isinstance(body, Nack):
            if self._probe is not None and self._probe.seq == body.seq:
                self._probe.nacks += 1
        elif isinstance(body, PingReq):
            self._on_ping_req(src, body, out)
        elif isinstance(body, PushPull):
            self._on_push_pull(src, body, out)
        if env.updates:
            if self.validator.is_quarantined(src):
                self.stats.updates_quarantined += len(env.updates)
            else:
                for u in env.updates:
                    self._merge(u, src, out)

    def _pull_from_stranger(self, src: str, out: list[Action]) -> None:
        """A member we do not know probes us: we missed its ALIVE (dissemination is
        probabilistic), so pull its full state now rather than wait for the next push/pull."""
        if src in self.members or self.validator.is_quarantined(src):
            return
        now = self._clock()
        if now - self._pulled.get(src, -math.inf) < self.config.probe_interval * 5:
            return
        self._pulled[src] = now
        if len(self._pulled) > 1024:
            self._pulled.pop(next(iter(self._pulled)))
        self._send(src, PushPull(join=False, reply=False, states=self._full_state()), out, piggyback=False)

    def _on_ack(self, src: str, seq: int, out: list[Action]) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq and not probe.acked:
            probe.acked = True
            if src == probe.target:
                # A direct exchange we initiated: the peer is confirmed.
                probe.direct = True
                self.validator.confirm(src)
            out.append(CancelTimer("probe_timeout"))
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            out.append(CancelTimer(f"relay:{seq}"))
            self._send(relay.requester, Ack(relay.seq), out)

    def _on_ping_req(self, src: str, req: PingReq, out: list[Action]) -> None:
        if req.target == self.node_id:
            self._send(src, Ack(req.seq), out)
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(src, req.seq)
        self._send(req.target, Ping(seq, req.target, on_behalf_of=src), out)
        # Lifeguard: tell the requester we tried but heard nothing, before its period ends.
        out.append(SetTimer(f"relay:{seq}", self.config.probe_timeout * 0.8))

    def _on_push_pull(self, src: str, pp: PushPull, out: list[Action]) -> None:
        if pp.reply and self._join_contacts:
            self._join_contacts = ()
            out.append(CancelTimer("join"))
        if self.validator.is_quarantined(src) and not pp.join:
            self.stats.updates_quarantined += len(pp.states)
        else:
            for u in pp.states:
                self._merge_remote_state(u, src, out)
        if not pp.reply:
            # Reply after merging: if the peer's state said we were dead, the reply already
            # carries our refutation (this is how the two sides of a healed partition reunite).
            self._send(src, PushPull(join=False, reply=True, states=self._full_state()), out, piggyback=False)

    def _on_timer(self, tag: str, out: list[Action]) -> None:
        if tag == "probe":
            self._finish_probe(out)
            self._start_probe(out)
        elif tag == "probe_timeout":
            self._indirect_probe(out)
        elif tag == "gossip":
            self._gossip_round(out)
            out.append(SetTimer("gossip", self.config.gossip_interval))
        elif tag == "push_pull":
            self._push_pull_round(out)
            out.append(SetTimer("push_pull", self.config.push_pull_period(self.cluster_size())))
        elif tag == "refresh":
            self.record = self._sign(self.record.incarnation + 1)
            self._queue.push(self._alive_update())
            out.append(SetTimer("refresh", self.config.record_ttl / 2))
        elif tag == "reap":
            self._reap()
            out.append(SetTimer("reap", self.config.gossip_to_the_dead_time / 2))
        elif tag == "join":
            if self._join_contacts and not self.alive():
                self._push_pull_join(out)
        elif tag.startswith("suspect:"):
            self._suspicion_expired(tag.removeprefix("suspect:"), out)
        elif tag.startswith("relay:"):
            self._relay_expired(int(tag.removeprefix("relay:")), tag, out)

    def _start_probe(self, out: list[Action]) -> None:
        out.append(SetTimer("probe", self._scaled(self.config.probe_interval)))
        target = self._next_probe_target()
        if target is None:
            return
        self._probe = _Probe(self._next_seq(), target)
        self.stats.probes += 1
        self._send(target, Ping(self._probe.seq, target), out)
        out.append(SetTimer("probe_timeout", self._scaled(self.config.probe_timeout)))

    def _next_probe_target(self) -> str | None:
        for _ in range(2):
            while self._probe_order:
                node_id = self._probe_order.pop()
                m = self.members.get(node_id)
                if m is not None and m.state in _LIVE:
                    return node_id
            self._probe_order = [n for n, m in self.members.items() if m.state is not _LEFT]
            self._rng.shuffle(self._probe_order)
        return None

    def _indirect_probe(self, out: list[Action]) -> None:
        probe = self._probe
        if probe is None or probe.acked:
            return
        self.loss += _LOSS_ALPHA * (1.0 - self.loss)
        helpers = [n for n in self.alive() if n != probe.target]
        chosen = self._rng.sample(helpers, min(self.config.indirect_checks, len(helpers)))
        probe.expected_nacks = len(chosen)
        self.stats.indirect_probes += len(chosen)
        for helper in chosen:
            self._send(helper, PingReq(probe.seq, probe.target), out)

    def _finish_probe(self, out: list[Action]) -> None:
        probe, self._probe = self._probe, None
        if probe is None:
            return
        max_score = self.config.awareness_max_multiplier - 1
        self.reachability.observe(probe.target, probe.direct, self._clock())
        if probe.acked:
            if probe.expected_nacks == 0:
                self.loss -= _LOSS_ALPHA * self.loss
            self.awareness = max(0, self.awareness - 1)
            return
        self.stats.probes_failed += 1
        missed = probe.expected_nacks - probe.nacks if probe.expected_nacks else 1
        self.awareness = min(max_score, self.awareness + max(0, missed))
        m = self.members.get(probe.target)
        if m is not None and m.state is _ALIVE:
            self.stats.suspicions += 1
            self._merge_suspect(probe.target, m.incarnation, self.node_id, out)

    def _relay_expired(self, seq: int, tag: str, out: list[Action]) -> None:
        relay = self._relays.get(seq)
        if relay is None:
            return
        if relay.nacked:
            del self._relays[seq]
            return
        relay.nacked = True
        self._send(relay.requester, Nack(relay.seq), out)
        out.append(SetTimer(tag, self.config.probe_interval))

    def _gossip_target_ok(self, m: Member, now: float) -> bool:
        return m.state in _LIVE or (m.state is _DEAD and now - m.since < self.config.gossip_to_the_dead_time)

    def _gossip_targets(self, count: int) -> list[str]:
        """A uniform sample of `count` members worth gossiping to (live, or recently dead).

        Rejection sampling over the id list: this runs every gossip interval on every node,
        and a scan of the whole table there made large clusters O(N^2) per round. Drawing ids
        uniformly and keeping the first `count` distinct eligible ones is a uniform sample of
        the eligible set; when too few turn up (most members ineligible) we fall back to the scan.
        """
        now = self._clock()
        ids, members = self._ids, self.members
        if count * 4 < len(ids):
            chosen: list[str] = []
            seen: set[str] = set()
            for _ in range(count * 8):
                n = ids[self._rng.randrange(len(ids))]
                if n not in seen:
                    seen.add(n)
                    if self._gossip_target_ok(members[n], now):
                        chosen.append(n)
                        if len(chosen) == count:
                            return chosen
        pool = [n for n, m in members.items() if self._gossip_target_ok(m, now)]
        return self._rng.sample(pool, min(count, len(pool)))

    def _gossip_round(self, out: list[Action]) -> None:
        if not len(self._queue):
            return
        for target in self._gossip_targets(self.config.fanout(self.loss)):
            if not len(self._queue):
                break
            self._send(target, None, out)

    def _push_pull_round(self, out: list[Action]) -> None:
        alive = self.alive()
        if alive:
            target = self._rng.choice(alive)
            self._send(target, PushPull(join=False, reply=False, states=self._full_state()), out, False)
        # Serf-style reconnect: also try one member we consider failed, so the two sides of a
        # healed partition find each other again even after the dead have been reaped.
        now = self._clock()
        for node_id in [
            n for n, (_r, since) in self._departed.items() if now - since > self.config.reconnect_timeout
        ]:
            del self._departed[node_id]
        failed = [n for n, m in self.members.items() if m.state is _DEAD] + list(self._departed)
        if failed:
            target = self._rng.choice(failed)
            self._send(target, PushPull(join=False, reply=False, states=self._full_state()), out, False)
