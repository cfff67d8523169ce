"""Latent Spore gossip configuration. Defaults are hashicorp/memberlist's LAN profile
(DefaultLANConfig), the most deployed SWIM implementation; see docs/spore.md for why."""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from spore._codec import MessageLimits
from spore._errors import ConfigError

__all__ = ["GossipConfig"]


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"GossipConfig.{attr.name} must be > 0, got {value!r}")


def _at_least_one(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"GossipConfig.{attr.name} must be >= 1, got {value!r}")


@attrs.frozen
class GossipConfig:
    """Timings in seconds. Every field is validated at construction."""

    probe_interval: float = attrs.field(default=1.0, validator=_positive)
    probe_timeout: float = attrs.field(default=0.5, validator=_positive)
    indirect_checks: int = attrs.field(default=3, validator=_at_least_one)
    gossip_interval: float = attrs.field(default=0.2, validator=_positive)
    gossip_nodes: int = attrs.field(default=3, validator=_at_least_one)
    push_pull_interval: float = attrs.field(default=30.0, validator=_positive)
    suspicion_mult: int = attrs.field(default=4, validator=_at_least_one)
    suspicion_max_timeout_mult: int = attrs.field(default=6, validator=_at_least_one)
    retransmit_mult: int = attrs.field(default=4, validator=_at_least_one)
    awareness_max_multiplier: int = attrs.field(default=8, validator=_at_least_one)
    gossip_to_the_dead_time: float = attrs.field(default=30.0, validator=_positive)
    reconnect_timeout: float = attrs.field(default=24 * 3600.0, validator=_positive)
    record_ttl: float = attrs.field(default=3600.0, validator=_positive)
    max_piggyback: int = attrs.field(default=16, validator=_at_least_one)
    adaptive: bool = True
    limits: MessageLimits = attrs.field(factory=MessageLimits)

    def __attrs_post_init__(self) -> None:
        if self.probe_timeout >= self.probe_interval:
            raise ValueError(
                f"GossipConfig.probe_timeout ({self.probe_timeout}) must be below probe_interval "
                f"({self.probe_interval}): the indirect probe needs the rest of the period"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> GossipConfig:
        """Build from a parsed TOML table / env-derived dict; unknown keys are an error that lists
        the valid ones, and every value goes through the field validators."""
        names = {f.name for f in attrs.fields(cls)} - {"limits"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown GossipConfig keys {unknown}; valid keys: {sorted(names)}")
        try:
            return cls(**data)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None

    def retransmit_limit(self, n: int, loss: float = 0.0) -> int:
        """memberlist: mult * ceil(log10(n + 1)); adaptive: one more round per 10% measured loss."""
        base = self.retransmit_mult * math.ceil(math.log10(n + 1))
        return base + (math.ceil(loss * 10) if self.adaptive else 0)

    def fanout(self, loss: float) -> int:
        """Gossip targets per round: memberlist's 3, plus one per 10% measured loss (adaptive)."""
        return self.gossip_nodes + (math.ceil(loss * 10) if self.adaptive else 0)

    def suspicion_bounds(self, n: int) -> tuple[float, float]:
        """memberlist: min = mult * max(1, log10 n) * probe_interval; max = max_mult * min."""
        lo = self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval
        return lo, lo * self.suspicion_max_timeout_mult

    def push_pull_period(self, n: int) -> float:
        """memberlist's pushPullScale: the period grows with log2(n) beyond 32 members."""
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)
