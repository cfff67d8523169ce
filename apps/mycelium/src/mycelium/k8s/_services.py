"""One namespace per independent service (R6.3): quota, limits, default-deny network, placement.

A service's pods see only their own namespace: the NetworkPolicy denies all ingress and egress
except traffic between the service's own pods and DNS, so a compromised service cannot reach the
backbone or another service unless a policy is added on purpose.
"""

from __future__ import annotations

from typing import Any

from mycelium.k8s._labels import common_labels, meta
from mycelium.k8s._spec import NetworkSpec, Placement, ServiceSpec

Obj = dict[str, Any]


def _labels(net: NetworkSpec, svc: ServiceSpec) -> dict[str, str]:
    labels = common_labels(net.name, "service")
    labels["mycelium.io/service"] = svc.name
    return labels


def service_namespace(net: NetworkSpec, svc: ServiceSpec) -> list[Obj]:
    labels = _labels(net, svc)
    ns = svc.namespace
    ns_labels = dict(labels)
    ns_labels["pod-security.kubernetes.io/enforce"] = "baseline"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns, ns_labels)},
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": meta("service-quota", labels, ns),
            "spec": {
                "hard": {
                    "requests.cpu": svc.quota.cpu,
                    "limits.cpu": svc.quota.cpu,
                    "requests.memory": svc.quota.memory,
                    "limits.memory": svc.quota.memory,
                    "pods": str(svc.quota.pods),
                    "requests.storage": svc.quota.storage,
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": meta("service-defaults", labels, ns),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        # With a quota on limits, every container needs limits: give sane defaults.
                        "default": {"cpu": "500m", "memory": "512Mi"},
                        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                    }
                ]
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("default-deny", labels, ns),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-same-service-and-dns", labels, ns),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [
                    {"to": [{"podSelector": {}}]},
                    {
                        "to": [{"namespaceSelector": {}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                ],
            },
        },
    ]


def placement_fragment(placement: Placement, pod_labels: dict[str, str]) -> Obj:
    """The pod-spec fields that implement a placement strategy (R6.2, R6.5)."""
    if placement.strategy == "spread":
        return {
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": placement.topology_key,
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": pod_labels},
                }
            ]
        }
    if placement.strategy == "affinity":
        terms = [
            {"key": key, "operator": "In", "values": list(values)}
            for key, values in sorted(placement.node_labels.items())
        ]
    else:
        terms = [{"key": "kubernetes.io/hostname", "operator": "In", "values": list(placement.nodes)}]
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": terms}]
                }
            }
        }
    }


def endomycete_deployment(
    net: NetworkSpec, svc: ServiceSpec, name: str, image: str, replicas: int, port: int | None = None
) -> Obj:
    """A natively distributed app run with ordinary Kubernetes patterns in its service namespace."""
    labels = _labels(net, svc)
    pod_labels = {"mycelium.io/service": svc.name, "mycelium.io/endomycete": name}
    container: Obj = {"name": name, "image": image}
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    pod_spec: Obj = {"containers": [container], **placement_fragment(svc.placement, pod_labels)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, labels, svc.namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {"metadata": {"labels": {**labels, **pod_labels}}, "spec": pod_spec},
        },
    }
