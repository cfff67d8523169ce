"""Access (R14.1-3): network administrators run the fabric; service owners see only their service.

Network administrators get the backbone namespace and the cluster-scoped Mycelium resources, but
no rights inside service namespaces. Service owners get a Role inside their own namespace and
nothing cluster-wide, so other services are invisible to them.
"""

from __future__ import annotations

from typing import Any

from mycelium.k8s._labels import GROUP, common_labels, meta
from mycelium.k8s._spec import NetworkSpec, ServiceSpec

Obj = dict[str, Any]

NETWORK_ADMIN_GROUP = "mycelium:network-admins"
WORKLOAD_RESOURCES = [
    "pods",
    "pods/log",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "events",
]


def network_admin(net: NetworkSpec) -> list[Obj]:
    labels = common_labels(net.name, "rbac")
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta("mycelium-network-admin", labels),
        "rules": [
            {"apiGroups": [GROUP], "resources": ["myceliumnetworks"], "verbs": ["*"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
            {
                "apiGroups": ["storage.k8s.io"],
                "resources": ["storageclasses"],
                "verbs": ["get", "list", "watch"],
            },
        ],
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta("mycelium-fabric-admin", labels, net.namespace),
        "rules": [
            {"apiGroups": ["", "apps", "policy"], "resources": ["*"], "verbs": ["*"]},
        ],
    }
    subjects = [{"kind": "Group", "name": NETWORK_ADMIN_GROUP, "apiGroup": "rbac.authorization.k8s.io"}]
    return [
        cluster_role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta("mycelium-network-admin", labels),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "mycelium-network-admin",
            },
            "subjects": subjects,
        },
        role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta("mycelium-fabric-admin", labels, net.namespace),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "mycelium-fabric-admin",
            },
            "subjects": subjects,
        },
    ]


def service_owner(net: NetworkSpec, svc: ServiceSpec) -> list[Obj]:
    labels = common_labels(net.name, "rbac")
    labels["mycelium.io/service"] = svc.name
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta("mycelium-service-owner", labels, svc.namespace),
        "rules": [
            {"apiGroups": [""], "resources": WORKLOAD_RESOURCES, "verbs": ["*"]},
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "statefulsets", "replicasets"],
                "verbs": ["*"],
            },
            {
                "apiGroups": [GROUP],
                "resources": ["endophytes", "endomycetes", "servicespores"],
                "verbs": ["*"],
            },
            # Quota and network policy are read-only: owners see their limits but cannot lift them.
            {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "verbs": ["get", "list"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list"]},
        ],
    }
    objs = [role]
    if svc.owners:
        objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta("mycelium-service-owner", labels, svc.namespace),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "mycelium-service-owner",
                },
                "subjects": [
                    {"kind": "User", "name": owner, "apiGroup": "rbac.authorization.k8s.io"}
                    for owner in svc.owners
                ],
            }
        )
    return objs


def operator_access(net: NetworkSpec) -> list[Obj]:
    """The operator's own identity: it creates service namespaces and their contents."""
    labels = common_labels(net.name, "operator")
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta("mycelium-operator", labels, net.namespace),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta("mycelium-operator", labels),
            "rules": [
                {"apiGroups": [GROUP], "resources": ["*"], "verbs": ["*"]},
                {
                    "apiGroups": [""],
                    "resources": [
                        "namespaces",
                        "resourcequotas",
                        "limitranges",
                        "services",
                        "serviceaccounts",
                    ],
                    "verbs": ["*"],
                },
                {"apiGroups": ["apps"], "resources": ["statefulsets", "deployments"], "verbs": ["*"]},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["*"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["*"]},
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles", "rolebindings"],
                    "verbs": ["*"],
                },
                {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta("mycelium-operator", labels),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "mycelium-operator",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "mycelium-operator", "namespace": net.namespace}],
        },
    ]
