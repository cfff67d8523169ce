"""Quorum configuration and trust-weighted quorum selection that every honest node can recompute.

Selection is a pure function of (beacon, operation id, attempt, eligible nodes with integer
weights): the coordinator cannot pick its friends, and a verifier recomputes the same quorum. The
draw is weighted sampling without replacement over integer weights, driven by SHA-256, so it gives
the same answer on every platform (no floating point).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence

import attrs

from bftconsensus._errors import ConfigError

__all__ = ["MajorityRule", "QuorumConfig", "select_quorum", "required_votes"]


class MajorityRule(enum.IntEnum):
    """How many matching reveals make a result canonical, for a quorum of q executors."""

    STRICT_MAJORITY = 1  # more than q/2 (BOINC's validator)
    TWO_F_PLUS_ONE = 2  # 2f+1 with f = (q-1)//3 (Byzantine quorum)


def required_votes(rule: MajorityRule, quorum_size: int) -> int:
    if rule is MajorityRule.STRICT_MAJORITY:
        return quorum_size // 2 + 1
    return 2 * ((quorum_size - 1) // 3) + 1


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ConfigError(f"QuorumConfig.{attribute.name} must be > 0, got {value!r}")


def _at_least_one(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigError(f"QuorumConfig.{attribute.name} must be >= 1, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ConfigError(f"QuorumConfig.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class QuorumConfig:
    """Parameters of commit-reveal execution; defaults and their sources are in docs/bftconsensus.md."""

    base_quorum: int = attrs.field(default=3, validator=_at_least_one)
    quorum_growth: int = attrs.field(default=2, validator=_non_negative)
    max_attempts: int = attrs.field(default=3, validator=_at_least_one)
    rule: MajorityRule = attrs.field(default=MajorityRule.STRICT_MAJORITY, converter=MajorityRule)
    commit_timeout: float = attrs.field(default=5.0, validator=_positive)
    reveal_timeout: float = attrs.field(default=5.0, validator=_positive)

    def quorum_size(self, attempt: int, eligible: int) -> int:
        return min(self.base_quorum + attempt * self.quorum_growth, eligible)


def _draw(seed: bytes, counter: int, modulus: int) -> int:
    digest = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
    return int.from_bytes(digest, "big") % modulus


def select_quorum(
    beacon: bytes, op_id: str, attempt: int, eligible: Sequence[tuple[str, int]], size: int
) -> list[str]:
    """Pick ``size`` distinct nodes from ``eligible`` (node, weight > 0), weighted by trust.

    Order matters: the result lists nodes in the order they were drawn.
    """
    pool = sorted((node, weight) for node, weight in eligible if weight > 0)
    if len({n for n, _ in pool}) != len(pool):
        raise ConfigError("eligible nodes must be distinct")
    seed = hashlib.sha256(
        b"bftconsensus.quorum\x00"
        + len(beacon).to_bytes(4, "big")
        + beacon
        + op_id.encode()
        + b"\x00"
        + attempt.to_bytes(4, "big")
    ).digest()
    chosen: list[str] = []
    counter = 0
    while pool and len(chosen) < size:
        total = sum(w for _, w in pool)
        point = _draw(seed, counter, total)
        counter += 1
        for i, (node, weight) in enumerate(pool):
            if point < weight:
                chosen.append(node)
                del pool[i]
                break
            point -= weight
    return chosen
