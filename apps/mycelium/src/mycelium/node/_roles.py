"""Node roles and the placement policy that promotes and demotes them (R3.2-4, R11.4-5).

The policy is a pure function of the network's published capacity: it never looks at a clock or
a socket, so every Sclerotium that sees the same view takes the same decision, and each decision
carries the reason that is logged with it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from mycelium._errors import MyceliumError


class Role(enum.StrEnum):
    DEDICATED_SCLEROTIUM = "dedicated-sclerotium"
    DYNAMIC_SCLEROTIUM = "dynamic-sclerotium"
    RHIZOMORPH = "rhizomorph"
    HYPHA = "hypha"

    @property
    def is_sclerotium(self) -> bool:
        return self in (Role.DEDICATED_SCLEROTIUM, Role.DYNAMIC_SCLEROTIUM)

    @property
    def label(self) -> str:
        return {
            Role.DEDICATED_SCLEROTIUM: "Sclerotium (dedicated)",
            Role.DYNAMIC_SCLEROTIUM: "Sclerotium (dynamic)",
            Role.RHIZOMORPH: "Rhizomorph",
            Role.HYPHA: "Hypha",
        }[self]

    @classmethod
    def parse(cls, text: str) -> Role:
        aliases = {"sclerotium": cls.DEDICATED_SCLEROTIUM, "dynamic": cls.DYNAMIC_SCLEROTIUM}
        try:
            return aliases.get(text) or cls(text)
        except ValueError:
            valid = ", ".join([r.value for r in cls] + list(aliases))
            raise MyceliumError(f"role {text!r} is not a role; choose one of: {valid}") from None


@attrs.frozen
class Capacity:
    """What a node offers, as published in its spore record."""

    cpus: float
    memory_bytes: int
    disk_bytes: int
    bandwidth_bps: int = 0
    load: float = 0.0  # 0..1 share of its CPU in use


@attrs.frozen
class Member:
    node_id: str
    role: Role
    capacity: Capacity
    alive: bool = True
    #: a Rhizomorph promoted to Dynamic Sclerotium stays a Rhizomorph too (R3.4)
    was_rhizomorph: bool = False


@attrs.frozen
class Decision:
    node_id: str
    from_role: Role
    to_role: Role
    reason: str


@attrs.frozen
class PlacementPolicy:
    """Keep enough Sclerotia for a Raft majority and enough backbone capacity, no more.

    ``min_sclerotia``: three tolerates one failure (etcd's own advice); ``target_load`` is the
    mean Sclerotium CPU load above which the network "lacks capacity" and ``surplus_load`` the one
    below which a Dynamic Sclerotium is handed back to Rhizomorph duty. The gap between the two is
    the hysteresis that stops a node flapping between roles.
    """

    min_sclerotia: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    target_load: float = attrs.field(default=0.75, validator=[attrs.validators.gt(0), attrs.validators.le(1)])
    surplus_load: float = attrs.field(default=0.30, validator=attrs.validators.ge(0))
    min_memory_bytes: int = 512 * 2**20

    def __attrs_post_init__(self) -> None:
        if self.surplus_load >= self.target_load:
            raise MyceliumError(
                f"surplus_load={self.surplus_load} must be below target_load={self.target_load} (hysteresis)"
            )

    def decide(self, members: Sequence[Member]) -> list[Decision]:
        alive = [m for m in members if m.alive]
        sclerotia = [m for m in alive if m.role.is_sclerotium]
        candidates = sorted(
            (
                m
                for m in alive
                if m.role is Role.RHIZOMORPH and m.capacity.memory_bytes >= self.min_memory_bytes
            ),
            key=lambda m: (-m.capacity.cpus * (1 - m.capacity.load), -m.capacity.memory_bytes, m.node_id),
        )
        load = sum(m.capacity.load for m in sclerotia) / len(sclerotia) if sclerotia else 1.0
        if len(sclerotia) < self.min_sclerotia and candidates:
            best = candidates[0]
            return [
                Decision(
                    best.node_id,
                    Role.RHIZOMORPH,
                    Role.DYNAMIC_SCLEROTIUM,
                    f"only {len(sclerotia)} of {self.min_sclerotia} Sclerotia alive; {best.node_id} has the most"
                    " spare capacity among Rhizomorphs",
                )
            ]
        if load > self.target_load and candidates:
            best = candidates[0]
            return [
                Decision(
                    best.node_id,
                    Role.RHIZOMORPH,
                    Role.DYNAMIC_SCLEROTIUM,
                    f"mean Sclerotium load {load:.0%} is above the {self.target_load:.0%} target",
                )
            ]
        dynamic = sorted(
            (m for m in sclerotia if m.role is Role.DYNAMIC_SCLEROTIUM),
            key=lambda m: (m.capacity.cpus, m.capacity.memory_bytes, m.node_id),
        )
        if dynamic and len(sclerotia) > self.min_sclerotia and load < self.surplus_load:
            weakest = dynamic[0]
            return [
                Decision(
                    weakest.node_id,
                    Role.DYNAMIC_SCLEROTIUM,
                    Role.RHIZOMORPH,
                    f"mean Sclerotium load {load:.0%} is below {self.surplus_load:.0%} with"
                    f" {len(sclerotia)} Sclerotia (> {self.min_sclerotia}): surplus",
                )
            ]
        return []
