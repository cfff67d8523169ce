"""The operator's controller loop: observe, call the pure :func:`reconcile`, apply, repeat.

Level-triggered polling (default every 10 s) rather than per-event handlers: a missed or
reordered watch event can then never leave the cluster wrong for longer than one period, and the
loop stays a few lines around the pure function that the tests exercise exhaustively.
Needs ``lightkube`` (``pip install 'mycelium[k8s]'``) and a reachable API server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from mycelium.k8s._labels import CRD_VERSION, GROUP, MANAGED_BY, MANAGED_BY_KEY
from mycelium.k8s._reconcile import Action, Create, Delete, Key, Obj, Update, desired_state, reconcile
from mycelium.k8s._render import key_of

CUSTOM_KINDS = {
    "MyceliumNetwork": ("myceliumnetworks", False),
    "Endophyte": ("endophytes", True),
    "Endomycete": ("endomycetes", True),
}
OWNED_KINDS = [
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("storage.k8s.io/v1", "StorageClass"),
]


def _resource(api_version: str, kind: str) -> Any:
    from lightkube.codecs import resource_registry
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource

    if kind in CUSTOM_KINDS:
        plural, namespaced = CUSTOM_KINDS[kind]
        make = create_namespaced_resource if namespaced else create_global_resource
        return make(GROUP, CRD_VERSION, kind, plural)
    if api_version == "kubevirt.io/v1":
        return create_namespaced_resource("kubevirt.io", "v1", kind, kind.lower() + "s")
    return resource_registry.load(api_version, kind)


async def observe(client: Any) -> tuple[list[Obj], dict[Key, Obj]]:
    crs: list[Obj] = []
    for kind, (_plural, namespaced) in CUSTOM_KINDS.items():
        res = _resource(f"{GROUP}/{CRD_VERSION}", kind)
        scope: dict[str, Any] = {"namespace": "*"} if namespaced else {}
        crs += [r.to_dict() if hasattr(r, "to_dict") else dict(r) async for r in client.list(res, **scope)]
    observed: dict[Key, Obj] = {}
    for api_version, kind in OWNED_KINDS:
        res = _resource(api_version, kind)
        namespaced = "Namespaced" in str(getattr(res, "_api_info", "")) or kind not in (
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "StorageClass",
        )
        kwargs: dict[str, Any] = {"labels": {MANAGED_BY_KEY: MANAGED_BY}}
        if namespaced:
            kwargs["namespace"] = "*"
        async for item in client.list(res, **kwargs):
            obj = item.to_dict()
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
            observed[key_of(obj)] = obj
    return crs, observed


async def apply(client: Any, action: Action) -> None:
    from lightkube import codecs

    if isinstance(action, Create | Update):
        await client.apply(codecs.from_dict(action.obj), field_manager=MANAGED_BY, force=True)
    elif isinstance(action, Delete):
        api_version, kind, namespace, name = action.key
        await client.delete(_resource(api_version, kind), name, namespace=namespace or None)


async def run(
    client: Any,
    interval: float = 10.0,
    iterations: int | None = None,
    report: Callable[[str], None] = print,
) -> None:
    """Reconcile forever (or ``iterations`` times), reporting each action and rejected resource."""
    done = 0
    while iterations is None or done < iterations:
        crs, observed = await observe(client)
        desired, rejected = desired_state(crs)
        for r in rejected:
            report(f"rejected {r.key[1]} {r.key[3]}: {r.reason}")
        for action in reconcile(desired, observed):
            report(f"{type(action).__name__.lower()} {_describe(action)}")
            await apply(client, action)
        done += 1
        if iterations is None or done < iterations:
            await anyio.sleep(interval)


def _describe(action: Action) -> str:
    key = action.key if isinstance(action, Delete) else key_of(action.obj)
    return f"{key[1]} {key[2] + '/' if key[2] else ''}{key[3]}"
