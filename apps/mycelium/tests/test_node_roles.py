"""The placement policy: promote when the network lacks capacity, demote on surplus, with reasons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelium._errors import MyceliumError
from mycelium.node import Capacity, Member, PlacementPolicy, Role

GIB = 2**30


def member(node_id: str, role: Role, load: float = 0.5, cpus: float = 4, alive: bool = True) -> Member:
    return Member(
        node_id, role, Capacity(cpus=cpus, memory_bytes=8 * GIB, disk_bytes=100 * GIB, load=load), alive
    )


def test_a_missing_sclerotium_is_replaced_by_the_strongest_rhizomorph() -> None:
    members = [
        member("s1", Role.DEDICATED_SCLEROTIUM),
        member("s2", Role.DEDICATED_SCLEROTIUM),
        member("s3", Role.DEDICATED_SCLEROTIUM, alive=False),
        member("r1", Role.RHIZOMORPH, cpus=2),
        member("r2", Role.RHIZOMORPH, cpus=8),
    ]
    (d,) = PlacementPolicy().decide(members)
    assert (d.node_id, d.to_role) == ("r2", Role.DYNAMIC_SCLEROTIUM)
    assert "2 of 3" in d.reason


def test_high_load_promotes_and_low_load_demotes() -> None:
    busy = [member(f"s{i}", Role.DEDICATED_SCLEROTIUM, load=0.9) for i in range(3)] + [
        member("r1", Role.RHIZOMORPH)
    ]
    (d,) = PlacementPolicy().decide(busy)
    assert d.to_role is Role.DYNAMIC_SCLEROTIUM
    assert "above" in d.reason
    idle = [member(f"s{i}", Role.DEDICATED_SCLEROTIUM, load=0.1) for i in range(3)] + [
        member("d1", Role.DYNAMIC_SCLEROTIUM, load=0.1)
    ]
    (d,) = PlacementPolicy().decide(idle)
    assert (d.node_id, d.to_role) == ("d1", Role.RHIZOMORPH)


def test_dedicated_sclerotia_are_never_demoted() -> None:
    idle = [member(f"s{i}", Role.DEDICATED_SCLEROTIUM, load=0.0) for i in range(5)]
    assert PlacementPolicy().decide(idle) == []


@given(st.floats(0.31, 0.74))
def test_hysteresis_band_takes_no_decision(load: float) -> None:
    members = [member(f"s{i}", Role.DEDICATED_SCLEROTIUM, load=load) for i in range(3)] + [
        member("d1", Role.DYNAMIC_SCLEROTIUM, load=load),
        member("r1", Role.RHIZOMORPH),
    ]
    assert PlacementPolicy().decide(members) == []


def test_policy_rejects_an_inverted_band() -> None:
    with pytest.raises(MyceliumError, match="hysteresis"):
        PlacementPolicy(target_load=0.3, surplus_load=0.5)


def test_unknown_role_names_the_valid_ones() -> None:
    with pytest.raises(MyceliumError, match="rhizomorph"):
        Role.parse("mushroom")
    assert Role.parse("sclerotium") is Role.DEDICATED_SCLEROTIUM
