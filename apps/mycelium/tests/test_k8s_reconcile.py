"""The operator's reconcile is a pure function; these properties hold for any observed state."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mycelium.k8s import key_of
from mycelium.k8s._reconcile import (
    Create,
    Delete,
    Update,
    apply_actions,
    covers,
    desired_state,
    is_managed,
    reconcile,
)

NETWORK_CR = {
    "apiVersion": "mycelium.io/v1alpha1",
    "kind": "MyceliumNetwork",
    "metadata": {"name": "demo"},
    "spec": {"networkId": "net-1", "sclerotia": 3},
}


def cr(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mycelium.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


custom_resources = st.lists(
    st.one_of(
        st.builds(
            lambda n, r: cr("Endomycete", f"app{n}", "svc-shop", {"image": "img:1", "replicas": r}),
            st.integers(0, 5),
            st.integers(1, 5),
        ),
        st.builds(
            lambda n, c: cr("Endophyte", f"vm{n}", "svc-shop", {"kind": "vm", "cpus": c}),
            st.integers(0, 3),
            st.integers(1, 8),
        ),
    ),
    max_size=6,
)


def unmanaged(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"owner": "human"}}}


@st.composite
def observed_states(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]]]:
    """Custom resources plus an observed world: some desired objects present (maybe drifted,
    with server defaults added), some stale managed leftovers, some human-owned objects."""
    crs = [NETWORK_CR, *draw(custom_resources)]
    desired, _ = desired_state(crs)
    observed: dict[Any, dict[str, Any]] = {}
    for key, obj in desired.items():
        choice = draw(st.sampled_from(["absent", "same", "drifted", "defaulted"]))
        if choice == "absent":
            continue
        have = copy.deepcopy(obj)
        if choice == "drifted" and "spec" in have and isinstance(have["spec"], dict):
            have["spec"]["drift"] = draw(st.integers())
            have["spec"].pop(next(iter(obj["spec"])), None)
        if choice == "defaulted":
            have["metadata"]["uid"] = "server-set"
            have["status"] = {"observed": True}
        observed[key] = have
    for i in range(draw(st.integers(0, 3))):
        stale = cr("Endomycete", f"gone{i}", "svc-shop", {"image": "old"})
        stale["apiVersion"], stale["kind"] = "apps/v1", "Deployment"
        stale["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "mycelium-operator"}
        observed[key_of(stale)] = stale
    for i in range(draw(st.integers(0, 3))):
        human = unmanaged(f"human-{i}")
        observed[key_of(human)] = human
    return crs, observed


@settings(max_examples=150, deadline=None)
@given(observed_states())
def test_reconcile_converges_in_one_pass(world: tuple[list[dict[str, Any]], dict[Any, Any]]) -> None:
    crs, observed = world
    desired, _ = desired_state(crs)
    after = apply_actions(observed, reconcile(desired, observed))
    assert reconcile(desired, after) == []
    for key, obj in desired.items():
        assert covers(obj, after[key])


@settings(max_examples=150, deadline=None)
@given(observed_states())
def test_objects_not_managed_by_the_operator_are_never_touched(
    world: tuple[list[Any], dict[Any, Any]],
) -> None:
    crs, observed = world
    desired, _ = desired_state(crs)
    for action in reconcile(desired, observed):
        key = action.key if isinstance(action, Delete) else key_of(action.obj)
        if key in observed:
            assert is_managed(observed[key])


@settings(max_examples=100, deadline=None)
@given(observed_states())
def test_reconcile_is_deterministic(world: tuple[list[Any], dict[Any, Any]]) -> None:
    crs, observed = world
    desired, _ = desired_state(crs)
    assert reconcile(desired, observed) == reconcile(desired, dict(reversed(list(observed.items()))))


def test_server_defaults_and_status_do_not_cause_updates() -> None:
    desired, _ = desired_state([NETWORK_CR])
    observed = {}
    for key, obj in desired.items():
        have = copy.deepcopy(obj)
        have["metadata"]["resourceVersion"] = "42"
        have["status"] = {"replicas": 3}
        observed[key] = have
    assert reconcile(desired, observed) == []


def test_namespaces_are_created_before_what_lives_in_them() -> None:
    desired, _ = desired_state([NETWORK_CR, cr("Endomycete", "api", "svc-shop", {"image": "x"})])
    actions = reconcile(desired, {})
    assert all(isinstance(a, Create) for a in actions)
    kinds = [a.obj["kind"] for a in actions if isinstance(a, Create)]
    assert kinds.index("Namespace") < kinds.index("StatefulSet")


def test_a_drifted_statefulset_is_updated_back() -> None:
    desired, _ = desired_state([NETWORK_CR])
    observed = copy.deepcopy(desired)
    sts_key = next(k for k in observed if k[1] == "StatefulSet")
    observed[sts_key]["spec"]["replicas"] = 1
    assert reconcile(desired, observed) == [Update(desired[sts_key])]


def test_invalid_custom_resources_are_rejected_with_a_reason() -> None:
    bad = cr("Endomycete", "api", "default", {"image": "x"})
    _, rejected = desired_state([NETWORK_CR, bad])
    assert len(rejected) == 1
    assert "service namespace" in rejected[0].reason
    _, rejected = desired_state([cr("Endomycete", "api", "svc-x", {"image": "x"})])
    assert "no valid MyceliumNetwork" in rejected[0].reason
