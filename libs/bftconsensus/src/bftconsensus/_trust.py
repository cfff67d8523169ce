"""The trust ledger: a deterministic function of the verdict log.

Every node that applies the same verdicts in the same order computes byte-identical state (see
:meth:`TrustLedger.fingerprint`), because everything is integer arithmetic in parts per million
and time comes from the signed verdicts, never from the local clock. Defaults and their sources
(BOINC, Cosmos x/slashing, Ethereum) are justified in docs/bftconsensus.md.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Iterable, Sequence

import attrs

from bftconsensus._errors import ConfigError
from bftconsensus._evidence import EvidenceKind
from bftconsensus._verdict import Verdict

__all__ = ["TrustParams", "TrustLedger", "NodeStatus", "TrustEvent", "PPM"]

PPM = 1_000_000
_DAY_MS = 86_400_000

_DOWNTIME = (EvidenceKind.MISSING_COMMIT, EvidenceKind.MISSING_REVEAL, EvidenceKind.LATE_REVEAL)


def _ppm(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= PPM:
        raise ConfigError(
            f"TrustParams.{attribute.name} must be in 0..{PPM} (parts per million), got {value!r}"
        )


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ConfigError(f"TrustParams.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class TrustParams:
    """Rewards, slashing and exclusion; fractions in parts per million, durations in ms."""

    neutral: int = attrs.field(default=500_000, validator=_ppm)
    reward: int = attrs.field(default=10_000, validator=_ppm)  # of the remaining headroom
    slash_downtime: int = attrs.field(default=10_000, validator=_ppm)  # Cosmos: 1%
    slash_dissent: int = attrs.field(default=50_000, validator=_ppm)  # Cosmos double-sign: 5%
    slash_provable_min: int = attrs.field(default=50_000, validator=_ppm)
    proportional_multiplier: int = attrs.field(default=3, validator=_positive)  # Ethereum (Bellatrix): 3
    proportional_window_ms: int = attrs.field(default=36 * _DAY_MS, validator=_positive)  # 8192 epochs
    jail_threshold: int = attrs.field(default=200_000, validator=_ppm)
    jail_duration_ms: int = attrs.field(default=600_000, validator=_positive)  # Cosmos: 600 s
    downtime_window: int = attrs.field(default=100, validator=_positive)  # Cosmos: 100 blocks
    min_participation: int = attrs.field(default=500_000, validator=_ppm)  # Cosmos: min_signed 0.5
    max_jails: int = attrs.field(default=3, validator=_positive)
    repeat_window_ms: int = attrs.field(default=7 * _DAY_MS, validator=_positive)
    half_life_ms: int = attrs.field(default=7 * _DAY_MS, validator=_positive)  # BOINC credit: one week


class NodeStatus(enum.Enum):
    ACTIVE = "active"
    JAILED = "jailed"  # excluded from critical tasks until the jail ends
    BANNED = "banned"  # excluded for good (provable or repeated faults)


@attrs.frozen
class TrustEvent:
    """One change the ledger made, for logs and metrics."""

    node: str
    what: str  # reward | slash | jail | ban
    trust: int
    reason: str


@attrs.define
class _Node:
    trust: int
    at_ms: int
    jailed_until: int = 0
    banned: bool = False
    jails: list[int] = attrs.Factory(list)
    window: deque[bool] = attrs.Factory(deque)


def _decay(trust: int, neutral: int, dt: int, half_life: int) -> int:
    """Move ``trust`` toward ``neutral``: halve the gap per half-life, linear within one."""
    if dt <= 0 or trust == neutral:
        return trust
    gap = trust - neutral
    sign = 1 if gap > 0 else -1
    mag = abs(gap) >> min(dt // half_life, 64)
    rem = dt % half_life
    mag = mag * (2 * half_life - rem) // (2 * half_life)
    return neutral + sign * mag


class TrustLedger:
    """Trust per node, updated only by :meth:`apply` (verified verdicts, in log order)."""

    def __init__(self, params: TrustParams | None = None) -> None:
        self.params = params or TrustParams()
        self._nodes: dict[str, _Node] = {}
        self._now = 0
        self._provable: deque[tuple[int, str]] = deque()  # (time, node) of provable faults
        self.applied = 0

    @classmethod
    def replay(cls, verdicts: Iterable[Verdict], params: TrustParams | None = None) -> TrustLedger:
        ledger = cls(params)
        for v in verdicts:
            ledger.apply(v)
        return ledger

    def _node(self, name: str) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _Node(self.params.neutral, self._now)
        node.trust = _decay(node.trust, self.params.neutral, self._now - node.at_ms, self.params.half_life_ms)
        node.at_ms = self._now
        return node

    def apply(self, verdict: Verdict) -> list[TrustEvent]:
        """Fold one verdict into the ledger. Time never goes backwards (max with the last one)."""
        p = self.params
        self._now = max(self._now, verdict.time_ms)
        self.applied += 1
        events: list[TrustEvent] = []
        for name in verdict.agreeing:
            n = self._node(name)
            n.trust += (PPM - n.trust) * p.reward // PPM
            self._observe(name, n, True, events)
            events.append(TrustEvent(name, "reward", n.trust, "agreed"))
        for name in verdict.dissenting:
            n = self._node(name)
            self._slash(name, n, p.slash_dissent, "dissent", events)
            self._observe(name, n, True, events)
        accused_provable = sorted({e.accused for e in verdict.evidence if e.kind.provable})
        for ev in sorted(verdict.evidence, key=lambda e: e.sort_key()):
            if ev.kind in _DOWNTIME:
                n = self._node(ev.accused)
                self._slash(ev.accused, n, p.slash_downtime, ev.kind.name.lower(), events)
                self._observe(ev.accused, n, False, events)
        horizon = self._now - p.proportional_window_ms
        while self._provable and self._provable[0][0] < horizon:
            self._provable.popleft()
        for name in accused_provable:
            self._provable.append((self._now, name))
        if accused_provable:
            faulty = len({who for _, who in self._provable})
            known = max(len(self._nodes), len(accused_provable))
            fraction = max(p.slash_provable_min, min(PPM, p.proportional_multiplier * faulty * PPM // known))
            for name in accused_provable:
                n = self._node(name)
                self._slash(name, n, fraction, "provable_fault", events)
                if not n.banned:
                    n.banned = True
                    events.append(TrustEvent(name, "ban", n.trust, "provable_fault"))
        return events

    def _slash(self, name: str, n: _Node, fraction: int, reason: str, events: list[TrustEvent]) -> None:
        n.trust -= n.trust * fraction // PPM
        events.append(TrustEvent(name, "slash", n.trust, reason))
        if n.trust < self.params.jail_threshold:
            self._jail(name, n, "below_threshold", events)

    def _observe(self, name: str, n: _Node, participated: bool, events: list[TrustEvent]) -> None:
        p = self.params
        n.window.append(participated)
        while len(n.window) > p.downtime_window:
            n.window.popleft()
        if len(n.window) == p.downtime_window:
            signed = sum(n.window)
            if signed * PPM < p.min_participation * p.downtime_window:
                n.window.clear()
                self._jail(name, n, "downtime", events)

    def _jail(self, name: str, n: _Node, reason: str, events: list[TrustEvent]) -> None:
        p = self.params
        if n.banned or n.jailed_until > self._now:
            return
        n.jailed_until = self._now + p.jail_duration_ms
        n.jails = [t for t in n.jails if t > self._now - p.repeat_window_ms] + [self._now]
        events.append(TrustEvent(name, "jail", n.trust, reason))
        if len(n.jails) >= p.max_jails:
            n.banned = True
            events.append(TrustEvent(name, "ban", n.trust, "repeated_jail"))

    def trust(self, name: str, at_ms: int | None = None) -> int:
        """Trust in ppm at ``at_ms`` (default: the time of the last verdict), decay included."""
        n = self._nodes.get(name)
        at = self._now if at_ms is None else max(at_ms, self._now)
        if n is None:
            return self.params.neutral
        return _decay(n.trust, self.params.neutral, at - n.at_ms, self.params.half_life_ms)

    def status(self, name: str, at_ms: int | None = None) -> NodeStatus:
        n = self._nodes.get(name)
        at = self._now if at_ms is None else max(at_ms, self._now)
        if n is None:
            return NodeStatus.ACTIVE
        if n.banned:
            return NodeStatus.BANNED
        if n.jailed_until > at or self.trust(name, at) < self.params.jail_threshold:
            return NodeStatus.JAILED
        return NodeStatus.ACTIVE

    def eligible(self, candidates: Sequence[str], at_ms: int | None = None) -> list[tuple[str, int]]:
        """(node, weight) for candidates allowed on critical tasks, ready for ``select_quorum``."""
        return [
            (c, self.trust(c, at_ms))
            for c in sorted(set(candidates))
            if self.status(c, at_ms) is NodeStatus.ACTIVE
        ]

    def ranking(self, at_ms: int | None = None) -> list[tuple[str, int]]:
        """Every known node, most trusted first (ties by id): identical on every honest node."""
        return sorted(((n, self.trust(n, at_ms)) for n in self._nodes), key=lambda x: (-x[1], x[0]))

    def fingerprint(self, at_ms: int | None = None) -> bytes:
        """SHA-256 over the full ledger state; equal logs give equal fingerprints."""
        h = hashlib.sha256()
        for name in sorted(self._nodes):
            n = self._nodes[name]
            h.update(
                f"{name}|{self.trust(name, at_ms)}|{n.jailed_until}|{n.banned}|{n.jails}|"
                f"{''.join('1' if w else '0' for w in n.window)}\n".encode()
            )
        return h.digest()
