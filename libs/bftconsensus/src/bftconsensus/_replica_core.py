"""The normal case of a PBFT replica as a sans-I/O core (Castro & Liskov, OSDI'99, with signatures).

The primary of view v batches client requests into a signed PRE-PREPARE(v, n, d); backups answer
with signed PREPAREs; with a quorum (2f+1 when n = 3f+1) of pre-prepare plus matching prepares a
replica is *prepared* and sends COMMIT; with a quorum of matching commits it executes batch n once
every batch below n has executed, and replies to the client. Messages that go into certificates
other replicas check (pre-prepares, prepares, checkpoints, view changes, client requests) are
Ed25519-signed; commits and replies, which never leave the link they arrive on, are authenticated
by that link (meshnet mutual TLS), as PBFT authenticates everything with MACs. Taking requests in,
batching and replying live in :mod:`bftconsensus._intake`; recovery in :mod:`bftconsensus._replica`.
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Container

from bftconsensus import _messages as pb
from bftconsensus._actions import Action, CancelTimer, Send
from bftconsensus._certs import (
    batch_digest,
    faults_tolerated,
    parse_request,
    primary_of,
    quorum_size,
)
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import DecodeError
from bftconsensus._intake import RequestIntake
from bftconsensus._links import ClientLinks
from bftconsensus._smr import RECONFIGURE_PREFIX, ReplicaConfig, StateMachine
from bftconsensus._wire import (
    DEFAULT_LIMITS,
    KIND_OF,
    Kind,
    WireLimits,
    decode_frame,
    open_signed,
    open_unsigned,
    seal,
)

__all__ = ["ReplicaCore"]


class _Slot:
    def __init__(self) -> None:
        self.pre_prepares: dict[int, tuple[pb.Signed, pb.PrePrepare]] = {}
        self.prepares: dict[tuple[int, bytes], dict[str, pb.Signed]] = {}
        self.commits: dict[tuple[int, bytes], dict[str, pb.Signed]] = {}
        self.prepared: pb.PreparedProof | None = None  # highest-view certificate
        self.prepared_view = -1
        self.commit_sent: set[int] = set()
        self.committed: pb.PrePrepare | None = None


class ReplicaCore(RequestIntake):
    """Normal-case PBFT: requests, pre-prepare/prepare/commit, execution, replies.

    Recovery (checkpoints, state transfer, view change, membership) lives in the subclass
    :class:`bftconsensus.Replica`; the hooks below are what this class calls into it.
    """

    def __init__(
        self,
        signer: Signer,
        keys: KeyDirectory,
        config: ReplicaConfig,
        app: StateMachine,
        *,
        clients: Container[str] | None = None,
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        self.signer = signer
        self.me = signer.node_id
        self.keys = keys
        self.config = config
        self.app = app
        self.limits = limits
        self.members: tuple[str, ...] = config.replicas
        self._clients = clients
        self.links = ClientLinks()
        self.view = 0
        self.in_view_change = False
        self.vc_target = 0
        self.next_seq = 1
        self.last_executed = 0
        self.stable_seq = 0
        self.stable_proof: list[pb.Signed] = []
        self.log: dict[int, _Slot] = {}
        self.pending: dict[str, tuple[int, pb.Signed]] = {}
        self.overdue: set[str] = set()  # clients whose pending request came again (retransmitted)
        self.assigned: set[tuple[str, int]] = set()
        self.client_table: dict[str, tuple[int, bytes]] = {}
        self.returning: set[str] = set()
        self.suspects: set[str] = set()  # clients a forged request was seen from: always checked
        self._holding = False
        self.checkpoints: dict[int, dict[bytes, dict[str, pb.Signed]]] = {}
        self.snapshots: dict[int, bytes] = {}
        self.view_changes: dict[
            int, dict[str, tuple[pb.Signed, pb.ViewChange, list[tuple[pb.PrePrepare, pb.Signed]]]]
        ] = {}
        self.latest_new_view: pb.Signed | None = None
        self.executed: OrderedDict[int, bytes] = OrderedDict()
        self.executed_requests: list[tuple[int, str, int, bytes]] = []
        self._timer_running = False
        self._vc_attempts = 0
        self._state_wanted = False
        self._ahead: set[str] = set()
        self.next_members: tuple[str, ...] = ()
        self.reconfig_at = 0
        self.requests_executed = 0

    # ------------------------------------------------------------------ helpers
    @property
    def f(self) -> int:
        return faults_tolerated(len(self.members))

    @property
    def quorum(self) -> int:
        """Matching messages that make a certificate: 2f+1 when n = 3f+1 (see quorum_size)."""
        return quorum_size(len(self.members))

    @property
    def primary(self) -> str:
        return primary_of(self.members, self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me and not self.in_view_change

    def _is_client(self, name: str) -> bool:
        if name in self.members:
            return False
        return self._clients is None or name in self._clients

    def _broadcast(self, env: pb.Signed) -> list[Action]:
        raw = bytes(env)
        return [Send(m, raw) for m in self.members if m != self.me]

    def _slot(self, seq: int) -> _Slot:
        slot = self.log.get(seq)
        if slot is None:
            slot = self.log[seq] = _Slot()
        return slot

    def _in_window(self, seq: int) -> bool:
        return self.stable_seq < seq <= self.stable_seq + self.config.watermark_window

    def start(self) -> list[Action]:
        return []

    # ------------------------------------------------------------------ input
    def receive(self, src: str, frame: bytes) -> list[Action]:
        """Handle one frame from ``src``. Malformed, forged or out-of-place input is dropped."""
        try:
            env = decode_frame(frame, self.limits)
            kind = KIND_OF[env.kind]  # decode_frame admits known kinds only
            if kind is Kind.CLIENT_REQUEST:
                return self._on_request(src, env)
            if kind is Kind.CLIENT_LINK:
                self.links.grant(src, env, self.keys, self._is_client, self.limits)
                return []
            if env.signer != src or src not in self.members:
                return []
            return self._dispatch(kind, env)
        except DecodeError:
            return []

    def _dispatch(self, kind: Kind, env: pb.Signed) -> list[Action]:
        if kind is Kind.PRE_PREPARE:
            return self._on_pre_prepare(env, open_signed(self.keys, env, pb.PrePrepare, self.limits))
        if kind is Kind.PREPARE:
            if self._prepare_is_moot(open_unsigned(env, pb.Prepare, self.limits)):
                return []  # already prepared in that view: spare the signature check
            return self._on_vote(env, open_signed(self.keys, env, pb.Prepare, self.limits), commit=False)
        if kind is Kind.COMMIT_VOTE:  # link-authenticated (see _commit_vote); a signed one is checked
            if env.signature:
                vote = open_signed(self.keys, env, pb.CommitVote, self.limits)
            else:
                vote = open_unsigned(env, pb.CommitVote, self.limits)
            return self._on_vote(env, vote, commit=True)
        if kind is Kind.CHECKPOINT:
            return self._on_checkpoint(env, open_signed(self.keys, env, pb.Checkpoint, self.limits))
        if kind is Kind.VIEW_CHANGE:
            return self._on_view_change(env)
        if kind is Kind.NEW_VIEW:
            return self._on_new_view(env)
        if kind is Kind.STATE_REQUEST:
            return self._on_state_request(env, open_signed(self.keys, env, pb.StateRequest, self.limits))
        if kind is Kind.STATE_RESPONSE:
            return self._on_state_response(open_signed(self.keys, env, pb.StateResponse, self.limits))
        return []

    def timer(self, tag: str) -> list[Action]:
        if self.me not in self.members:
            return []  # removed by a reconfiguration (or not yet a member): stay quiet
        try:
            return self._on_timer(tag)
        except DecodeError:
            return []

    def _on_timer(self, tag: str) -> list[Action]:
        if tag == "view-change":
            self._timer_running = False
            if self.in_view_change:
                return self._start_view_change(self.vc_target + 1)
            if self._waiting():
                return self._start_view_change(self.view + 1)
            return []
        if tag in ("batch", "batch-limit"):
            return self._on_batch_timer()
        if tag == "state":
            self._state_wanted = False
            # Ask again while a stable checkpoint is still ahead of execution: the first request
            # may have reached replicas that had not yet made that checkpoint stable themselves.
            if self.last_executed < self.stable_seq or len(self._ahead) > self.f:
                return self._request_state()
        return []

    def _issue_pre_prepare(self, seq: int, batch: list[pb.Signed]) -> list[Action]:
        """Sign and send one pre-prepare (a Byzantine test double overrides this to equivocate)."""
        pp = pb.PrePrepare(view=self.view, seq=seq, digest=batch_digest(batch), requests=batch)
        env = seal(self.signer, Kind.PRE_PREPARE, pp)
        self._slot(seq).pre_prepares[self.view] = (env, pp)
        return self._broadcast(env) + self._check(seq)

    # ------------------------------------------------------------------ normal case
    def _note_ahead(self, src: str, view: int, seq: int) -> list[Action]:
        if view > self.view or seq > self.stable_seq + self.config.watermark_window:
            self._ahead.add(src)
            if len(self._ahead) > self.f and not self._state_wanted:
                return self._request_state()
        return []

    def _on_pre_prepare(self, env: pb.Signed, pp: pb.PrePrepare) -> list[Action]:
        if env.signer != primary_of(self.members, pp.view) or pp.view < self.view:
            return []
        if pp.view > self.view + len(self.members) or not self._in_window(pp.seq):
            return self._note_ahead(env.signer, pp.view, pp.seq)
        if self.reconfig_at and pp.seq > self.reconfig_at:
            return []  # nothing is ordered past a membership boundary under the old membership
        if batch_digest(pp.requests) != pp.digest:
            return []
        self._authenticate(pp.requests)
        slot = self._slot(pp.seq)
        held = slot.pre_prepares.get(pp.view)
        if held is not None:
            if held[1].digest != pp.digest:  # the primary signed two batches for one slot
                return self._start_view_change(max(self.view, pp.view) + 1)
            return []
        slot.pre_prepares[pp.view] = (env, pp)
        if pp.view > self.view or self.in_view_change:
            return self._note_ahead(env.signer, pp.view, pp.seq)
        return self._accept_pre_prepare(pp)

    def _accept_pre_prepare(self, pp: pb.PrePrepare) -> list[Action]:
        actions: list[Action] = []
        if self.me != primary_of(self.members, pp.view):
            vote = seal(self.signer, Kind.PREPARE, pb.Prepare(pp.view, pp.seq, pp.digest, self.me))
            self._slot(pp.seq).prepares.setdefault((pp.view, pp.digest), {})[self.me] = vote
            actions += self._broadcast(vote)
        return actions + self._check(pp.seq)

    def _on_vote(self, env: pb.Signed, vote: pb.Prepare | pb.CommitVote, *, commit: bool) -> list[Action]:
        if vote.replica != env.signer or vote.view < self.view:
            return []
        if vote.view > self.view + len(self.members) or not self._in_window(vote.seq):
            return self._note_ahead(env.signer, vote.view, vote.seq)
        if not commit and env.signer == primary_of(self.members, vote.view):
            return []
        slot = self._slot(vote.seq)
        table = slot.commits if commit else slot.prepares
        key = (vote.view, vote.digest)
        if key not in table and len(table) >= 4 * len(self.members):
            return []  # bounded: a faulty replica cannot grow a slot with made-up digests
        table.setdefault(key, {})[env.signer] = env
        if vote.view > self.view:
            return self._note_ahead(env.signer, vote.view, vote.seq)
        return self._check(vote.seq)

    def _prepare_is_moot(self, vote: pb.Prepare) -> bool:
        """True when this replica is already prepared for the vote's slot in the vote's view.

        Such a prepare can change nothing (the prepared certificate is built when the quorum is
        reached), so its signature need not be verified: with n = 7 that is one verification in
        five at a backup, two in six at the primary.
        """
        slot = self.log.get(vote.seq)
        return slot is not None and vote.view == self.view and vote.view in slot.commit_sent

    def _check(self, seq: int) -> list[Action]:
        slot = self.log.get(seq)
        if slot is None or self.in_view_change:
            return []
        held = slot.pre_prepares.get(self.view)
        if held is None:
            return []
        env, pp = held
        key = (self.view, pp.digest)
        actions: list[Action] = []
        prepares = {r: e for r, e in slot.prepares.get(key, {}).items() if r != self.primary}
        if len(prepares) >= self.quorum - 1 and self.view not in slot.commit_sent:
            slot.commit_sent.add(self.view)
            if self.view > slot.prepared_view:
                slot.prepared = pb.PreparedProof(
                    pre_prepare=env, prepares=[prepares[r] for r in sorted(prepares)]
                )
                slot.prepared_view = self.view
            vote = self._commit_vote(seq, pp.digest)
            slot.commits.setdefault(key, {})[self.me] = vote
            actions += self._broadcast(vote)
        if (
            self.view in slot.commit_sent
            and slot.committed is None
            and len(slot.commits.get(key, {})) >= self.quorum
        ):
            slot.committed = pp
            actions += self._execute_ready()
        return actions

    def _commit_vote(self, seq: int, digest: bytes) -> pb.Signed:
        """A COMMIT, authenticated by the channel it travels on (signed too with sign_all_messages).

        PBFT never relays commits or puts them in a certificate another replica checks (view
        changes carry pre-prepares and prepares, state transfer carries checkpoints), so, as with
        PBFT's MACs, point-to-point authentication is all a commit needs. The receiver has already
        checked that the signer it names is the authenticated sender. This saves one signature
        and n-1 verifications per replica per batch.
        """
        vote = pb.CommitVote(self.view, seq, digest, self.me)
        if self.config.sign_all_messages:
            return seal(self.signer, Kind.COMMIT_VOTE, vote)
        return pb.Signed(int(Kind.COMMIT_VOTE), bytes(vote), self.me)

    # ------------------------------------------------------------------ execution
    def _execute_ready(self) -> list[Action]:
        actions: list[Action] = []
        progressed = False
        while True:
            slot = self.log.get(self.last_executed + 1)
            if slot is None or slot.committed is None:
                break
            actions += self._execute(self.last_executed + 1, slot.committed)
            progressed = True
        if progressed and not self.in_view_change:
            self._vc_attempts = 0
            actions.append(CancelTimer("view-change"))
            self._timer_running = False
            actions += self._arm_timer() + self._propose()
        return actions

    def _execute(self, seq: int, pp: pb.PrePrepare) -> list[Action]:
        actions: list[Action] = []
        expect_back = self.is_primary and len(pp.requests) > 1 and self.config.batch_delay > 0
        for env in pp.requests:
            req = parse_request(env, self.members, self.limits)
            done = self.client_table.get(req.client)
            if done is not None and req.timestamp <= done[0]:
                continue
            if req.operation.startswith(RECONFIGURE_PREFIX):
                result = self._schedule_reconfiguration(
                    seq, req.client, req.operation[len(RECONFIGURE_PREFIX) :]
                )
            else:
                result = self.app.apply(req.operation)
            self.client_table[req.client] = (req.timestamp, result)
            held = self.pending.get(req.client)
            if held is not None and held[0] <= req.timestamp:
                self._drop_pending(req.client)
                if expect_back:
                    self.returning.add(req.client)
            self.executed_requests.append((seq, req.client, req.timestamp, req.operation))
            self.requests_executed += 1
            if self.config.reply_all or self._replies_first(req.client, req.timestamp):
                actions.append(self._reply(req.client, req.timestamp, result))
        del self.executed_requests[: -self.config.history_limit]
        self.last_executed = seq
        self.executed[seq] = pp.digest
        while len(self.executed) > self.config.history_limit:
            self.executed.popitem(last=False)
        if seq == self.reconfig_at:
            self._switch_membership()
        if seq % self.config.checkpoint_interval == 0:
            actions += self._take_checkpoint(seq)
        return actions

    # ------------------------------------------------------------------ hooks (see Replica)
    @abc.abstractmethod
    def _take_checkpoint(self, seq: int) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _on_checkpoint(self, env: pb.Signed, cp: pb.Checkpoint) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _request_state(self) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _on_state_request(self, env: pb.Signed, req: pb.StateRequest) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _on_state_response(self, resp: pb.StateResponse) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _start_view_change(self, new_view: int) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _on_view_change(self, env: pb.Signed) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _on_new_view(self, env: pb.Signed) -> list[Action]:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _schedule_reconfiguration(self, seq: int, client: str, command: bytes) -> bytes:
        """Implemented by :class:`bftconsensus.Replica`."""

    @abc.abstractmethod
    def _switch_membership(self) -> None:
        """Implemented by :class:`bftconsensus.Replica`."""
