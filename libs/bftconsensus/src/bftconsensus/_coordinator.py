"""The coordinator side of commit-reveal: one :class:`QuorumRun` per operation.

Phases per attempt: send signed ``ExecuteRequest`` to the selected quorum; collect commits until
every member committed or the commit deadline passes; only then ask the committed executors to
reveal; collect reveals until all are in or the reveal deadline passes; tally. A majority ends the
run with an accepted verdict; otherwise the next attempt runs on a larger, freshly drawn quorum,
and after ``max_attempts`` the run ends with a rejected verdict and a :class:`NoMajorityError`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from bftconsensus import _messages as pb
from bftconsensus._actions import Action, CancelTimer, Send, SetTimer
from bftconsensus._crypto import KeyDirectory, Signer
from bftconsensus._errors import ConfigError, DecodeError, NoMajorityError
from bftconsensus._evidence import AttemptRecord, analyse_attempt, votes_needed
from bftconsensus._quorum import MajorityRule, QuorumConfig, select_quorum
from bftconsensus._verdict import Verdict, build_verdict
from bftconsensus._wire import DEFAULT_LIMITS, Kind, WireLimits, decode_frame, open_signed, seal

__all__ = ["QuorumRun", "Phase"]


class Phase(enum.Enum):
    IDLE = "idle"
    COMMIT = "commit"
    REVEAL = "reveal"
    DONE = "done"


class _Attempt:
    def __init__(self, number: int, quorum: list[str]) -> None:
        self.number = number
        self.quorum = quorum
        self.commits: list[pb.Signed] = []
        self.commit_bodies: dict[str, bytes] = {}  # executor -> first commit body
        self.reveals: list[pb.Signed] = []
        self.reveal_bodies: dict[str, bytes] = {}
        self.late: list[pb.Signed] = []

    def record(self) -> AttemptRecord:
        return AttemptRecord(
            self.number, tuple(self.quorum), tuple(self.commits), tuple(self.reveals), tuple(self.late)
        )


class QuorumRun:
    """Sans-I/O coordinator for one operation. Call :meth:`start`, then feed frames and timers.

    When :attr:`verdict` is set the run is over; :attr:`error` is a :class:`NoMajorityError` when
    no result won. Timer tags are ``"<op_id>/commit/<attempt>"`` and ``"<op_id>/reveal/<attempt>"``.
    """

    def __init__(
        self,
        coordinator: Signer,
        keys: KeyDirectory,
        operation: pb.Signed,
        eligible: Sequence[tuple[str, int]],
        beacon: bytes,
        config: QuorumConfig | None = None,
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        self.coordinator = coordinator
        self.keys = keys
        self.operation = operation
        self.op = open_signed(keys, operation, pb.Operation, limits)
        self.eligible = [(n, w) for n, w in eligible if w > 0]
        if not self.eligible:
            raise ConfigError("eligible must contain at least one node with weight > 0")
        self.beacon = beacon
        self.config = config or QuorumConfig()
        self.limits = limits
        self.phase = Phase.IDLE
        self.attempts: list[_Attempt] = []
        self.verdict: Verdict | None = None
        self.error: NoMajorityError | None = None

    @property
    def op_id(self) -> str:
        return self.op.op_id

    def _tag(self, what: str, attempt: int) -> str:
        return f"{self.op_id}/{what}/{attempt}"

    def start(self, now: float) -> list[Action]:
        return self._begin_attempt(0, now)

    def _begin_attempt(self, number: int, now: float) -> list[Action]:
        size = self.config.quorum_size(number, len(self.eligible))
        quorum = select_quorum(self.beacon, self.op_id, number, self.eligible, size)
        self.attempts.append(_Attempt(number, quorum))
        self.phase = Phase.COMMIT
        req = bytes(seal(self.coordinator, Kind.EXECUTE_REQUEST, pb.ExecuteRequest(self.operation, number)))
        actions: list[Action] = [Send(node, req) for node in quorum]
        actions.append(SetTimer(self._tag("commit", number), self.config.commit_timeout))
        return actions

    @property
    def current(self) -> _Attempt:
        return self.attempts[-1]

    def receive(self, src: str, frame: bytes, now: float) -> list[Action]:
        """Handle a frame from an executor; anything malformed, forged or off-topic is dropped."""
        if self.phase in (Phase.DONE, Phase.IDLE):
            return []
        try:
            env = decode_frame(frame, self.limits)
            if env.signer != src:
                return []
            if env.kind == Kind.COMMIT:
                return self._on_commit(env, open_signed(self.keys, env, pb.Commit, self.limits), now)
            if env.kind == Kind.REVEAL:
                return self._on_reveal(env, open_signed(self.keys, env, pb.Reveal, self.limits), now)
        except DecodeError:
            return []
        return []

    def _on_commit(self, env: pb.Signed, body: pb.Commit, now: float) -> list[Action]:
        if body.op_id != self.op_id or body.executor != env.signer or body.attempt >= len(self.attempts):
            return []
        att = self.attempts[body.attempt]
        if env.signer not in att.quorum:
            return []
        first = att.commit_bodies.get(env.signer)
        if first == env.body:
            return []
        # Keep a second, different commit too: it is equivocation evidence.
        if first is None and (att is not self.current or self.phase is not Phase.COMMIT):
            return []
        att.commits.append(env)
        if first is not None:
            return []
        att.commit_bodies[env.signer] = env.body
        if len(att.commit_bodies) == len(att.quorum):
            return self._begin_reveal(now)
        return []

    def _begin_reveal(self, now: float) -> list[Action]:
        att = self.current
        self.phase = Phase.REVEAL
        actions: list[Action] = [CancelTimer(self._tag("commit", att.number))]
        if not att.commit_bodies:
            return actions + self._finish_attempt(now)
        req = bytes(seal(self.coordinator, Kind.REVEAL_REQUEST, pb.RevealRequest(self.op_id, att.number)))
        actions += [Send(node, req) for node in att.quorum if node in att.commit_bodies]
        actions.append(SetTimer(self._tag("reveal", att.number), self.config.reveal_timeout))
        return actions

    def _on_reveal(self, env: pb.Signed, body: pb.Reveal, now: float) -> list[Action]:
        if body.op_id != self.op_id or body.executor != env.signer or body.attempt >= len(self.attempts):
            return []
        att = self.attempts[body.attempt]
        if env.signer not in att.commit_bodies:
            return []
        if att is not self.current:  # its attempt already closed: late, kept as evidence
            if all(e.signer != env.signer for e in att.late) and env.signer not in att.reveal_bodies:
                att.late.append(env)
            return []
        if self.phase is not Phase.REVEAL:
            return []  # not asked yet; an executor must not reveal early
        first = att.reveal_bodies.get(env.signer)
        if first == env.body:
            return []
        att.reveals.append(env)
        if first is not None:
            return []
        att.reveal_bodies[env.signer] = env.body
        if len(att.reveal_bodies) == len(att.commit_bodies):
            return [CancelTimer(self._tag("reveal", att.number)), *self._finish_attempt(now)]
        return []

    def timer(self, tag: str, now: float) -> list[Action]:
        if self.phase is Phase.COMMIT and tag == self._tag("commit", self.current.number):
            return self._begin_reveal(now)
        if self.phase is Phase.REVEAL and tag == self._tag("reveal", self.current.number):
            return self._finish_attempt(now)
        return []

    def _finish_attempt(self, now: float) -> list[Action]:
        att = self.current
        outcome = analyse_attempt(self.keys, self.op_id, att.record(), self.config.rule)
        if outcome.canonical is None and att.number + 1 < self.config.max_attempts:
            return self._begin_attempt(att.number + 1, now)
        self.phase = Phase.DONE
        self.verdict = build_verdict(
            self.coordinator,
            self.keys,
            self.operation,
            self.beacon,
            self.eligible,
            self.config,
            [a.record() for a in self.attempts],
            int(now * 1000),
        )
        if outcome.canonical is None:
            needed = (
                "a strict majority"
                if self.config.rule is MajorityRule.STRICT_MAJORITY
                else f"2f+1 ({votes_needed(self.config.rule, len(att.quorum))} votes)"
            )
            self.error = NoMajorityError(
                self.op_id, len(self.attempts), {r: list(w) for r, w in self.verdict.revealed.items()}, needed
            )
        return []
