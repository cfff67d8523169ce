"""The operator's brain: a pure function from (custom resources, observed objects) to actions.

Level-triggered and idempotent: the controller calls :func:`reconcile` with everything it sees
and applies what comes back; calling it again on the result yields no actions. It only ever
touches objects labelled as managed by the operator, so objects a human created are never
updated or deleted. Restart/rescheduling of failed pods is left to Kubernetes, configured through
what we render (StatefulSet, PDB, probes, KubeVirt's LiveMigrate eviction).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from mycelium.k8s._crds import validate_instance
from mycelium.k8s._labels import MANAGED_BY, MANAGED_BY_KEY
from mycelium.k8s._render import key_of, kind_rank, render
from mycelium.k8s._services import endomycete_deployment
from mycelium.k8s._spec import EndophyteVMSpec, NetworkSpec, Placement, ServiceSpec, SpecError

Obj = dict[str, Any]
Key = tuple[str, str, str, str]


@attrs.frozen
class Create:
    obj: Obj


@attrs.frozen
class Update:
    obj: Obj


@attrs.frozen
class Delete:
    key: Key


Action = Create | Update | Delete


@attrs.frozen
class Rejected:
    """A custom resource that could not be turned into objects, with the reason (for its status)."""

    key: Key
    reason: str


def _placement(spec: Mapping[str, Any]) -> Placement:
    p = spec.get("placement") or {}
    return Placement(
        strategy=p.get("strategy", "spread"),
        node_labels={k: tuple(v) for k, v in (p.get("nodeLabels") or {}).items()},
        nodes=tuple(p.get("nodes") or ()),
    )


def desired_state(resources: Iterable[Obj]) -> tuple[dict[Key, Obj], list[Rejected]]:
    """Everything our custom resources ask for, keyed by object identity."""
    desired: dict[Key, Obj] = {}
    rejected: list[Rejected] = []
    resources = list(resources)
    networks = [r for r in resources if r.get("kind") == "MyceliumNetwork"]
    # Namespaced CRs only take effect when exactly one network exists to own them.
    net: NetworkSpec | None = None
    for r in networks:
        try:
            validate_instance(r)
            s = r["spec"]
            net = NetworkSpec(
                name=r["metadata"]["name"],
                network_id=s["networkId"],
                namespace=s.get("namespace", "mycelium-system"),
                image=s.get("image", NetworkSpec.__attrs_attrs__.image.default),
                sclerotia=s.get("sclerotia", 3),
                storage_backend=s.get("storageBackend", "longhorn"),
                storage_class=s.get("storageClass", ""),
                storage_size=s.get("storageSize", "20Gi"),
            )
        except SpecError as exc:
            rejected.append(Rejected(key_of(r), str(exc)))
            continue
        for obj in render(net, include_crds=False):
            desired[key_of(obj)] = obj
    for r in resources:
        kind = r.get("kind")
        if kind not in ("Endophyte", "Endomycete"):
            continue
        try:
            validate_instance(r)
            if net is None:
                raise SpecError("no valid MyceliumNetwork exists to host it")
            namespace = r["metadata"].get("namespace", "")
            if not namespace.startswith("svc-"):
                raise SpecError(f"namespace {namespace!r} is not a service namespace (svc-<name>)")
            svc = ServiceSpec(name=namespace.removeprefix("svc-"), placement=_placement(r["spec"]))
            s = r["spec"]
            if kind == "Endomycete":
                obj = endomycete_deployment(
                    net, svc, r["metadata"]["name"], s["image"], s.get("replicas", 3), s.get("port")
                )
            elif s["kind"] == "vm":
                from mycelium.k8s._kubevirt import virtual_machine

                obj = virtual_machine(
                    net,
                    EndophyteVMSpec(
                        name=r["metadata"]["name"],
                        service=svc.name,
                        cpus=s.get("cpus", 2),
                        memory=s.get("memory", "4Gi"),
                        dedicated_cpus=s.get("dedicatedCpus", True),
                        hugepages=s.get("hugepages", ""),
                        dedicated_interface=s.get("dedicatedInterface", ""),
                        replicas=s.get("replicas", 1),
                    ),
                )
            else:
                obj = endomycete_deployment(
                    net, svc, r["metadata"]["name"], s.get("image", ""), s.get("replicas", 1)
                )
        except (SpecError, KeyError, TypeError, ValueError) as exc:
            rejected.append(Rejected(key_of(r), str(exc)))
            continue
        desired[key_of(obj)] = obj
    return desired, rejected


def is_managed(obj: Mapping[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_KEY) == MANAGED_BY)


def covers(want: Any, have: Any) -> bool:
    """True when every field we set has that value in the observed object.

    Observed objects carry server-side defaults and status we never set, so equality would make
    the operator fight the API server forever; we compare only what we own.
    """
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and covers(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(covers(w, h) for w, h in zip(want, have, strict=True))
        )
    return bool(want == have)


def reconcile(desired: Mapping[Key, Obj], observed: Mapping[Key, Obj]) -> list[Action]:
    """The actions that take ``observed`` to ``desired``, creations in dependency order, deletions last."""
    upserts: list[Action] = []
    for key, obj in sorted(desired.items(), key=lambda kv: (kind_rank(kv[1]), kv[0])):
        have = observed.get(key)
        if have is None:
            upserts.append(Create(obj))
        elif not is_managed(have):
            continue  # a human's object with our name: never take it over
        elif not covers(obj, have):
            upserts.append(Update(obj))
    deletes: list[Action] = [
        Delete(key)
        for key, have in sorted(observed.items(), key=lambda kv: (-kind_rank(kv[1]), kv[0]))
        if key not in desired and is_managed(have)
    ]
    return upserts + deletes


def apply_actions(observed: Mapping[Key, Obj], actions: Iterable[Action]) -> dict[Key, Obj]:
    """What a faithful API server would hold after the actions (used by tests and dry runs)."""
    state = dict(observed)
    for action in actions:
        if isinstance(action, Delete):
            state.pop(action.key, None)
        else:
            state[key_of(action.obj)] = action.obj
    return state
