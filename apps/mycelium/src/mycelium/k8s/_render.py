"""Render a whole deployment: the objects ``mycelium k8s render`` prints and the operator applies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from mycelium.k8s._crds import all_crds
from mycelium.k8s._kubevirt import virtual_machine
from mycelium.k8s._rbac import network_admin, operator_access, service_owner
from mycelium.k8s._sclerotia import render_backbone
from mycelium.k8s._services import service_namespace
from mycelium.k8s._spec import EndophyteVMSpec, NetworkSpec, ServiceSpec

Obj = dict[str, Any]

# Apply order: definitions and namespaces before what lives in them.
_KIND_ORDER = [
    "CustomResourceDefinition",
    "Namespace",
    "StorageClass",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ResourceQuota",
    "LimitRange",
    "NetworkPolicy",
    "Service",
    "StatefulSet",
    "Deployment",
    "PodDisruptionBudget",
    "VirtualMachine",
]


def kind_rank(obj: Obj) -> int:
    kind = obj.get("kind", "")
    return _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)


def render(
    net: NetworkSpec,
    services: Iterable[ServiceSpec] = (),
    vms: Iterable[EndophyteVMSpec] = (),
    include_crds: bool = True,
) -> list[Obj]:
    objs: list[Obj] = list(all_crds()) if include_crds else []
    objs += render_backbone(net)
    objs += network_admin(net)
    objs += operator_access(net)
    for svc in services:
        objs += service_namespace(net, svc)
        objs += service_owner(net, svc)
    objs += [virtual_machine(net, vm) for vm in vms]
    return sorted(objs, key=kind_rank)


def to_yaml(objs: Iterable[Obj]) -> str:
    return yaml.safe_dump_all(list(objs), sort_keys=False)


def key_of(obj: Obj) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): the identity the operator reconciles by."""
    md = obj.get("metadata", {})
    return (obj["apiVersion"], obj["kind"], md.get("namespace", ""), md["name"])
