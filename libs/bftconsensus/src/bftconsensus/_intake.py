"""The client-facing side of a PBFT replica: taking requests in, batching them, replying.

Clients send a request to the primary, and to every replica when they retransmit. A replica,
the primary included, takes a request from its client's own authenticated link (or a link the
client granted, see ``ClientLinks``) without checking its signature, and from anywhere else only
with a valid one. The primary batches pending requests; a backup accepts a batch when it can
vouch for each request in it (its own copy, its MAC tag, or the signature). A client whose
request a replica could not vouch for, or whose signature failed, is a suspect there: that
replica checks every request of that client from then on, as primary before proposing one (see
``_checks_signatures``). Replies go out from f+1 designated replicas per request, from every
replica that executed it when the client retransmits.
"""

from __future__ import annotations

import abc
import zlib

from bftconsensus import _messages as pb
from bftconsensus._actions import Action, CancelTimer, Send, SendReply, SetTimer
from bftconsensus._certs import parse_request
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import DecodeError
from bftconsensus._links import ClientLinks
from bftconsensus._macs import tag_matches
from bftconsensus._smr import HOLD_LIMIT, ReplicaConfig
from bftconsensus._wire import (
    BATCH_OVERHEAD,
    Kind,
    WireLimits,
    open_signed,
    open_unsigned,
    request_bytes,
    seal,
)

__all__ = ["RequestIntake"]


class RequestIntake(abc.ABC):
    """Requests and replies, on the state :class:`~bftconsensus._replica_core.ReplicaCore` owns."""

    config: ReplicaConfig
    keys: KeyDirectory
    limits: WireLimits
    signer: Signer
    me: str
    members: tuple[str, ...]
    view: int
    next_seq: int
    last_executed: int
    reconfig_at: int
    pending: dict[str, tuple[int, pb.Signed]]  # the latest request held per client
    overdue: set[str]  # clients whose pending request came again (retransmitted)
    assigned: set[tuple[str, int]]  # (client, timestamp) already put in a batch in this view
    client_table: dict[str, tuple[int, bytes]]  # the last executed timestamp and result per client
    returning: set[str]  # clients the primary just answered, expected to send again (batching)
    suspects: set[str]  # clients a request that failed its signature check was seen from
    links: ClientLinks
    _timer_running: bool
    _holding: bool  # the primary holds a part-filled batch back (its "batch" timers run)
    _vc_attempts: int

    @property
    @abc.abstractmethod
    def f(self) -> int: ...

    @property
    @abc.abstractmethod
    def is_primary(self) -> bool: ...

    @property
    @abc.abstractmethod
    def primary(self) -> str: ...

    @abc.abstractmethod
    def _is_client(self, name: str) -> bool: ...

    @abc.abstractmethod
    def _in_window(self, seq: int) -> bool: ...

    @abc.abstractmethod
    def _issue_pre_prepare(self, seq: int, batch: list[pb.Signed]) -> list[Action]: ...

    # ------------------------------------------------------------------ requests
    def _on_request(self, src: str, env: pb.Signed) -> list[Action]:
        # A request from the client's own authenticated link is the client's; its signature is
        # checked only for a suspect (see _checks_signatures), on arrival rather than when the
        # next batch leaves. A copy from anywhere else must carry a valid one.
        if self.links.speaks_for(src, env.signer) and not self._checks_signatures(env.signer):
            req = open_unsigned(env, pb.ClientRequest, self.limits)
        else:
            req = self._open_checked(env)
        if req.client != env.signer or not self._is_client(req.client):
            return []
        done = self.client_table.get(req.client)
        if done is not None and req.timestamp <= done[0]:
            if req.timestamp == done[0]:
                return [self._reply(req.client, done[0], done[1])]
            return []
        held = self.pending.get(req.client)
        if held is not None and held[0] >= req.timestamp:
            if held[0] == req.timestamp and req.client not in self.overdue:
                self.overdue.add(req.client)
                return self._arm_timer()
            return []
        self.pending[req.client] = (req.timestamp, env)
        if self.is_primary:
            self.overdue.discard(req.client)
            self.returning.discard(req.client)
            return self._arm_timer() + self._propose()
        # Clients send to backups only when they retransmit (or when they still believe in an
        # earlier primary): as PBFT's backups do, pass it on to the primary and start waiting.
        self.overdue.add(req.client)
        relay: list[Action] = [] if src == self.primary else [Send(self.primary, bytes(env))]
        return self._arm_timer() + relay

    def _waiting(self) -> bool:
        """Whether this replica expects a pending request to execute (its view-change timer runs).

        The primary waits on every request it holds; a backup on the requests that came to it
        directly (clients send to backups only when they retransmit) or came again. A request a
        backup only met in the primary's batch is not one it waits on.
        """
        if self.is_primary:
            return bool(self.pending)
        return bool(self.overdue)

    def _drop_pending(self, client: str) -> None:
        del self.pending[client]
        self.overdue.discard(client)

    def _arm_timer(self) -> list[Action]:
        if self._timer_running or not self._waiting():
            return []
        self._timer_running = True
        return [SetTimer("view-change", self.config.view_change_timeout * (2 ** min(self._vc_attempts, 6)))]

    def _propose(self) -> list[Action]:
        if not self.is_primary:
            return []
        actions: list[Action] = []
        while (
            self.next_seq - 1 - self.last_executed < self.config.max_inflight
            and self._in_window(self.next_seq)
            and not (self.reconfig_at and self.next_seq > self.reconfig_at)
        ):
            if self._expecting_more():
                if not self._holding:
                    self._holding = True
                    actions.append(SetTimer("batch-limit", HOLD_LIMIT * self.config.batch_delay))
                # (re-)armed at each arrival: the wait is for the next client, not for the first
                actions.append(SetTimer("batch", self.config.batch_delay))
                break
            batch = self._next_batch()
            if not batch and not self.reconfig_at:
                break  # with a reconfiguration pending, empty batches carry the log to its boundary
            if self._holding:
                self._holding = False
                actions += [CancelTimer("batch"), CancelTimer("batch-limit")]
            seq = self.next_seq
            self.next_seq += 1  # before issuing: issuing can execute (n=1) and re-enter _propose
            actions += self._issue_pre_prepare(seq, batch)
        return actions

    def _expecting_more(self) -> bool:
        """Whether to hold a part-filled batch back for the clients the primary just answered.

        With one batch in flight, a batch leaves when the previous one executes, with whatever
        arrived meanwhile; clients answered by that batch send their next request a moment later
        and miss it. Left alone, the clients split into groups that each wait for the others'
        batches (about 11 requests per batch with 32 clients), and every batch costs the same
        signatures and messages. Waiting until the clients of the batches just executed are back
        lets one batch carry them all: about 30 requests per batch, about a third less CPU per
        operation over the cluster. Clients are expected back only after a batch of two or more
        (a lone client is never kept waiting for itself). The wait ends when no expected client
        came for ``batch_delay`` (their requests arrive one after another, over longer than that
        when one process sends them all) or ``HOLD_LIMIT`` times that after it began; either
        expiry forgets those that did not come.
        """
        if not self.returning or self.reconfig_at:  # empty when batch_delay is 0 (see _execute)
            return False
        unassigned = sum(
            1 for client, (ts, _env) in self.pending.items() if (client, ts) not in self.assigned
        )
        return 0 < unassigned < self.config.batch_size

    def _on_batch_timer(self) -> list[Action]:
        """The batch held back waited long enough: propose what is there."""
        self._holding = False
        self.returning.clear()
        return [CancelTimer("batch"), CancelTimer("batch-limit"), *self._propose()]

    def _next_batch(self) -> list[pb.Signed]:
        """Up to ``batch_size`` pending requests not yet ordered whose pre-prepare fits in a frame;
        a suspect's only with a valid signature.

        Requests that together make a pre-prepare larger than backups accept
        (``WireLimits.max_frame_bytes``) would stall the slot: the batch stops short of that, and
        a request too large for any batch is dropped (a :class:`Client` with the same limits
        refuses to send one).
        """
        batch: list[pb.Signed] = []
        room = self.limits.max_frame_bytes - BATCH_OVERHEAD
        for client, (ts, env) in sorted(self.pending.items()):
            if len(batch) == self.config.batch_size:
                break
            if (client, ts) in self.assigned:
                continue
            size = request_bytes(env)
            if size > room:
                if batch:
                    break  # the next batch takes it
                self._drop_pending(client)  # no batch can
                continue
            if self._checks_signatures(client):
                try:
                    self._open_checked(env)  # checked on arrival already, unless suspected since
                except DecodeError:
                    self._drop_pending(client)
                    continue
            room -= size
            self.assigned.add((client, ts))
            batch.append(env)
        return batch

    def _authenticate(self, envs: list[pb.Signed]) -> None:
        """Raise DecodeError unless this replica can vouch that each request's client sent it.

        A request this replica received from its client's own authenticated link, whose MAC tag
        for this replica holds, or whose signature verifies, is authentic; one already executed
        is skipped at execution anyway. Every prepare for a batch therefore vouches for its
        requests, and a certificate holds at least f+1 prepares (pre-prepare included), one of
        them honest: so certificates are not re-checked against client signatures, as PBFT with
        MAC authenticators does. The tag is a keyed BLAKE2b MAC; the signature, an Ed25519
        verification ~70 times dearer, is the fallback for a backup without the client's key or
        with a bad tag.
        """
        mine = self._position()
        for env in envs:
            req = parse_request(env, self.members, self.limits)
            held = self.pending.get(req.client)
            if held is not None and held[1].body == env.body and held[1].signature == env.signature:
                continue
            done = self.client_table.get(req.client)
            if done is not None and req.timestamp <= done[0]:
                continue
            key = self.links.mac_key(req.client)
            if (
                key is not None
                and mine is not None
                and tag_matches(key, mine, env.macs, env.kind, env.signer, env.body)
            ):
                continue
            self._open_checked(env)

    def _checks_signatures(self, client: str) -> bool:
        """Whether this replica checks the signature of ``client``'s requests even when they come
        over the client's own link: for every client with ``check_all_requests``, else for
        suspects.

        A backup vouches for a request in a batch by its own copy, its MAC tag or the signature,
        so a client that signs badly and gives some backups bad tags can make them refuse the
        batch, and the slot waits for a view change. Every replica that refuses it marks the
        client a suspect, and a suspect's requests are checked by every replica that marked it:
        as primary, before proposing one; as a backup, before holding one (and waiting on it).
        For the slot to stall, more than f backups must have refused, so within a few views the
        primary is one of them and the client stalls nothing more (~1 per client in the
        simulator). PBFT with MAC authenticators has the same exposure, without the marking;
        Aardvark closes it by checking every signature at the primary
        (``ReplicaConfig.check_all_requests``), ~55 us a request on the critical path.
        """
        return self.config.check_all_requests or client in self.suspects

    def _open_checked(self, env: pb.Signed) -> pb.ClientRequest:
        """Check a request's signature; a known client whose signature fails becomes a suspect.

        Only names in the key directory are kept, so the set stays bounded. A faulty replica can
        make an honest client a suspect by passing on a forgery in its name: that costs this
        replica the honest client's signature checks, nothing else.
        """
        try:
            return open_signed(self.keys, env, pb.ClientRequest, self.limits)
        except DecodeError:
            if env.signer in self.keys and self._is_client(env.signer):
                self.suspects.add(env.signer)
            raise

    def _position(self) -> int | None:
        """This replica's index in the membership (its MAC tag's place), None if not a member."""
        try:
            return self.members.index(self.me)
        except ValueError:
            return None

    # ------------------------------------------------------------------ replies
    def _replies_first(self, client: str, ts: int) -> bool:
        """Whether this replica is one of the f+1 that answer the request's first transmission.

        The f+1 are consecutive members from a start every replica computes alike (CRC-32 of the
        client id plus the timestamp), so the reply work is spread over the members.
        """
        n = len(self.members)
        mine = self._position()
        if mine is None:
            return False
        start = (zlib.crc32(client.encode()) + ts) % n
        return (mine - start) % n <= self.f

    def _reply(self, client: str, ts: int, result: bytes) -> Send:
        reply = pb.Reply(self.view, ts, client, self.me, self.reply_result(result))
        if self.config.sign_all_messages:
            return Send(client, bytes(seal(self.signer, Kind.REPLY, reply)))
        # authenticated by the channel to the client (see ReplicaConfig.sign_all_messages), so a
        # driver may put it in one REPLIES frame with others for the same link
        raw = bytes(reply)
        return SendReply(client, bytes(pb.Signed(int(Kind.REPLY), raw, self.me)), raw)

    def reply_result(self, result: bytes) -> bytes:
        """The result put in replies (a Byzantine test double overrides this to lie)."""
        return result
