"""PBFT recovery on top of the normal case: checkpoints and garbage collection, state transfer,
view change and membership change (see :mod:`bftconsensus._replica_core` for the normal case).

Checkpoints: every ``checkpoint_interval`` executions replicas sign CHECKPOINT(n, state digest);
2f+1 matching make it stable, which moves the low watermark and garbage-collects the log. View
change: a replica whose timer expires with a request pending sends VIEW-CHANGE(v+1) with its
stable checkpoint proof and prepared certificates; the new primary gathers 2f+1 and sends NEW-VIEW
with the pre-prepares it recomputes from them, which every backup recomputes too. State transfer:
a replica behind the stable checkpoint fetches a snapshot that 2f+1 checkpoint signatures vouch for.
"""

from __future__ import annotations

import contextlib
import hashlib

from bftconsensus import _messages as pb
from bftconsensus._actions import Action, CancelTimer, Send, SetTimer
from bftconsensus._certs import (
    check_checkpoint_proof,
    check_view_change,
    new_view_plan,
    parse_request,
    primary_of,
    quorum_size,
)
from bftconsensus._errors import DecodeError
from bftconsensus._replica_core import ReplicaCore
from bftconsensus._wire import Kind, open_signed, seal

__all__ = ["Replica"]


class Replica(ReplicaCore):
    """One PBFT replica. Feed frames with :meth:`receive` and timers with :meth:`timer`."""

    # ------------------------------------------------------------------ checkpoints
    def state_bytes(self) -> bytes:
        state = pb.ReplicaState(
            application=self.app.snapshot(),
            clients=[pb.ClientEntry(c, ts, r) for c, (ts, r) in sorted(self.client_table.items())],
            members=list(self.members),
            next_members=list(self.next_members),
            reconfig_at=self.reconfig_at,
        )
        return bytes(state)

    def _take_checkpoint(self, seq: int) -> list[Action]:
        snap = self.state_bytes()
        self.snapshots[seq] = snap
        digest = hashlib.sha256(snap).digest()
        env = seal(self.signer, Kind.CHECKPOINT, pb.Checkpoint(seq, digest, self.me))
        return self._broadcast(env) + self._on_checkpoint(env, pb.Checkpoint(seq, digest, self.me))

    def _on_checkpoint(self, env: pb.Signed, cp: pb.Checkpoint) -> list[Action]:
        if cp.replica != env.signer or cp.seq <= self.stable_seq or cp.seq % self.config.checkpoint_interval:
            return []
        if cp.seq > self.stable_seq + 4 * self.config.watermark_window:
            return self._note_ahead(env.signer, self.view, cp.seq)
        signers = self._checkpoint_signers(cp.seq)
        if env.signer not in signers:
            return []
        votes = self.checkpoints.setdefault(cp.seq, {}).setdefault(cp.state_digest, {})
        votes[env.signer] = env
        if len(votes) < quorum_size(len(signers)):
            return []
        return self._make_stable(cp.seq, [votes[r] for r in sorted(votes)])

    def _checkpoint_signers(self, seq: int) -> tuple[str, ...]:
        """The membership whose quorum makes the checkpoint at ``seq`` stable.

        At or past a scheduled reconfiguration boundary it is the new membership: the removed
        replicas no longer sign, and counted by the old quorum a replica that has not yet executed
        the boundary batch would make it stable, discard that batch and wait for a snapshot that
        nobody can vouch for until its own checkpoint completes the new quorum.
        """
        if self.next_members and seq >= self.reconfig_at:
            return self.next_members
        return self.members

    def _make_stable(self, seq: int, proof: list[pb.Signed], *, propose: bool = True) -> list[Action]:
        if seq <= self.stable_seq:
            return []
        self.stable_seq = seq
        self.stable_proof = proof
        for old in [s for s in self.log if s <= seq]:
            del self.log[old]
        for old in [s for s in self.checkpoints if s <= seq]:
            del self.checkpoints[old]
        for old in [s for s in self.snapshots if s < seq]:
            del self.snapshots[old]
        self.next_seq = max(self.next_seq, seq + 1)
        if self.last_executed < seq:
            return self._request_state()
        return self._propose() if propose else []

    # ------------------------------------------------------------------ membership
    def _schedule_reconfiguration(self, seq: int, client: str, command: bytes) -> bytes:
        """Deterministic on every replica: validates and schedules, or returns an error result.

        The change takes effect after the first checkpoint boundary at least one watermark window
        after ``seq``: no honest replica can have accepted a pre-prepare that far ahead under the
        old membership, so the new membership starts with an empty log above the boundary.
        """
        if client not in self.config.admins:
            return b"error: client is not an administrator"
        if self.reconfig_at:
            return b"error: a reconfiguration is already scheduled"
        parts = command.decode(errors="replace").split(" ")
        if len(parts) != 2 or parts[0] not in ("add", "remove"):
            return b"error: expected 'add <replica>' or 'remove <replica>'"
        action, node = parts
        if action == "add" and (node in self.members or node not in self.keys):
            return b"error: replica to add must be new and have a known public key"
        if action == "remove" and (node not in self.members or len(self.members) == 1):
            return b"error: replica to remove must be a member and not the last one"
        members = (*self.members, node) if action == "add" else tuple(m for m in self.members if m != node)
        k = self.config.checkpoint_interval
        self.reconfig_at = -(-(seq + self.config.watermark_window) // k) * k
        self.next_members = members
        return f"reconfiguration scheduled at {self.reconfig_at}".encode()

    def _switch_membership(self) -> None:
        self.members = self.next_members
        self.next_members = ()
        self.reconfig_at = 0
        for seq in [s for s in self.log if s > self.last_executed]:
            del self.log[seq]
        self.next_seq = self.last_executed + 1
        self.view_changes.clear()
        self.assigned = set()

    # ------------------------------------------------------------------ state transfer
    def _request_state(self) -> list[Action]:
        self._state_wanted = True
        env = seal(self.signer, Kind.STATE_REQUEST, pb.StateRequest(self.last_executed, self.me))
        return [*self._broadcast(env), SetTimer("state", self.config.state_retry)]

    def _on_state_request(self, env: pb.Signed, req: pb.StateRequest) -> list[Action]:
        resp = pb.StateResponse(new_view=self.latest_new_view or pb.Signed())
        if self.stable_seq > req.seq and self.stable_seq in self.snapshots:
            resp.seq = self.stable_seq
            resp.snapshot = self.snapshots[self.stable_seq]
            resp.checkpoint_proof = self.stable_proof
        elif self.latest_new_view is None:
            return []
        return [Send(env.signer, bytes(seal(self.signer, Kind.STATE_RESPONSE, resp)))]

    def _on_state_response(self, resp: pb.StateResponse) -> list[Action]:
        actions: list[Action] = []
        if resp.new_view.signature:
            # A NEW-VIEW this replica cannot check (say, signed under a membership it joined
            # after) must not cost it the snapshot, which carries its own certificate.
            with contextlib.suppress(DecodeError):
                actions += self._on_new_view(resp.new_view)
        if resp.seq > self.last_executed:
            signers = self._checkpoint_signers(resp.seq)
            digest = check_checkpoint_proof(self.keys, signers, resp.seq, resp.checkpoint_proof)
            if hashlib.sha256(resp.snapshot).digest() != digest:
                return actions
            state = pb.ReplicaState().parse(resp.snapshot)
            self.app.restore(state.application)
            self.client_table = {e.client: (e.timestamp, e.result) for e in state.clients}
            self.members = tuple(state.members)
            self.next_members = tuple(state.next_members)
            self.reconfig_at = state.reconfig_at
            for client in [
                c for c, (ts, _) in self.pending.items() if ts <= self.client_table.get(c, (0, b""))[0]
            ]:
                self._drop_pending(client)
            self.last_executed = resp.seq
            self.snapshots[resp.seq] = resp.snapshot
            self._ahead.clear()
            if resp.seq > self.stable_seq:
                actions += self._make_stable(resp.seq, list(resp.checkpoint_proof))
            actions += self._execute_ready()
        elif not resp.new_view.signature:
            return actions
        self._ahead.clear()
        return actions

    # ------------------------------------------------------------------ view change
    def _start_view_change(self, new_view: int) -> list[Action]:
        if new_view <= self.view or (self.in_view_change and new_view <= self.vc_target):
            return []
        self.in_view_change = True
        self.vc_target = new_view
        self._vc_attempts += 1
        prepared = [
            s.prepared
            for seq, s in sorted(self.log.items())
            if s.prepared is not None and seq > self.stable_seq
        ]
        vc = pb.ViewChange(new_view, self.stable_seq, list(self.stable_proof), prepared, self.me)
        env = seal(self.signer, Kind.VIEW_CHANGE, vc)
        self._timer_running = True
        actions: list[Action] = [
            SetTimer("view-change", self.config.view_change_timeout * (2 ** min(self._vc_attempts, 6)))
        ]
        return actions + self._broadcast(env) + self._on_view_change(env)

    def _on_view_change(self, env: pb.Signed) -> list[Action]:
        vc, certs = check_view_change(self.keys, self.members, env, self.config.watermark_window)
        if vc.new_view <= self.view:
            if self.latest_new_view is not None and env.signer != self.me:
                return [Send(env.signer, bytes(self.latest_new_view))]
            return []
        for view in [v for v, table in self.view_changes.items() if env.signer in table]:
            if view > vc.new_view:
                return []  # keep only each replica's latest view change (bounded memory)
            del self.view_changes[view][env.signer]
            if not self.view_changes[view]:
                del self.view_changes[view]
        self.view_changes.setdefault(vc.new_view, {})[env.signer] = (env, vc, certs)
        actions: list[Action] = []
        floor = self.vc_target if self.in_view_change else self.view
        higher = {r for v, table in self.view_changes.items() if v > floor for r in table}
        if len(higher) > self.f:  # f+1 others want a later view: at least one honest one does
            target = min(v for v, table in self.view_changes.items() if v > floor and table)
            actions += self._start_view_change(target)
        table = self.view_changes.get(self.vc_target, {})
        if (
            self.in_view_change
            and primary_of(self.members, self.vc_target) == self.me
            and self.me in table
            and len(table) >= self.quorum
        ):
            actions += self._send_new_view(self.vc_target)
        return actions

    def _send_new_view(self, view: int) -> list[Action]:
        table = self.view_changes[view]
        chosen = sorted(table)[: self.quorum]
        if self.me not in chosen:
            chosen = [*chosen[:-1], self.me]
        _, _, plan = new_view_plan([(table[r][1], table[r][2]) for r in chosen])
        pps = [
            seal(self.signer, Kind.PRE_PREPARE, pb.PrePrepare(view, seq, digest, reqs))
            for seq, digest, reqs in plan
        ]
        env = seal(self.signer, Kind.NEW_VIEW, pb.NewView(view, [table[r][0] for r in chosen], pps))
        return self._broadcast(env) + self._on_new_view(env)

    def _on_new_view(self, env: pb.Signed) -> list[Action]:
        nv = open_signed(self.keys, env, pb.NewView, self.limits)
        if nv.view <= self.view or env.signer != primary_of(self.members, nv.view):
            return []
        checked = []
        for vc_env in nv.view_changes:
            vc, certs = check_view_change(self.keys, self.members, vc_env, self.config.watermark_window)
            if vc.new_view != nv.view:
                return []
            checked.append((vc, certs))
        if len({vc.replica for vc, _ in checked}) < self.quorum:
            return []
        _min_s, max_s, plan = new_view_plan(checked)
        if len(plan) != len(nv.pre_prepares):
            return []
        opened = []
        for (seq, digest, reqs), pp_env in zip(plan, nv.pre_prepares, strict=True):
            pp = open_signed(self.keys, pp_env, pb.PrePrepare, self.limits)
            if pp_env.signer != env.signer or (pp.view, pp.seq, pp.digest) != (nv.view, seq, digest):
                return []
            if [bytes(r) for r in pp.requests] != [bytes(r) for r in reqs]:
                return []
            opened.append((pp_env, pp))
        # Valid: enter the new view.
        self.view = nv.view
        self.in_view_change = False
        self.vc_target = nv.view
        self.latest_new_view = env
        for v in [v for v in self.view_changes if v <= nv.view]:
            del self.view_changes[v]
        actions: list[Action] = [CancelTimer("view-change")]
        self._timer_running = False
        best = max((vc for vc, _ in checked), key=lambda vc: vc.stable_seq)
        self.next_seq = max(max_s, self.stable_seq, best.stable_seq) + 1
        self.assigned = set()
        self.returning.clear()  # whom a former primary answered says nothing about this view
        for _, pp in opened:
            for r in pp.requests:
                req = parse_request(r, self.members, self.limits)
                self.assigned.add((req.client, req.timestamp))
        if best.stable_seq > self.stable_seq:
            actions += self._make_stable(best.stable_seq, list(best.checkpoint_proof), propose=False)
        for pp_env, pp in opened:
            if self._in_window(pp.seq):
                self._slot(pp.seq).pre_prepares[nv.view] = (pp_env, pp)
                actions += self._accept_pre_prepare(pp)
        for seq, slot in sorted(self.log.items()):  # pre-prepares that arrived before the new view
            held = slot.pre_prepares.get(nv.view)
            if held is not None and seq > max_s:
                actions += self._accept_pre_prepare(held[1])
        return actions + self._arm_timer() + self._propose()
