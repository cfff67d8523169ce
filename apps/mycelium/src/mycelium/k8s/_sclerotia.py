"""The Sclerotia backbone on Kubernetes: StatefulSet, headless Service, PDB, StorageClass.

Why a StatefulSet: each Sclerotium keeps a stable identity (its node key and etcd member name)
and its own volume across restarts. Required anti-affinity on ``kubernetes.io/hostname`` puts
replicas on separate hosts, so losing one machine loses at most one Sclerotium; the PDB keeps a
Raft majority through drains; probes let the kubelet restart a wedged agent (self-healing).
"""

from __future__ import annotations

from typing import Any

from mycelium.k8s._labels import common_labels, meta
from mycelium.k8s._spec import NetworkSpec

Obj = dict[str, Any]


def _selector(spec: NetworkSpec) -> dict[str, str]:
    return {"app.kubernetes.io/instance": spec.name, "app.kubernetes.io/component": "sclerotium"}


def namespace(spec: NetworkSpec) -> Obj:
    labels = common_labels(spec.name, "fabric")
    # The backbone runs privileged networking (VPN, IPAM), so it opts out of the restricted profile.
    labels["pod-security.kubernetes.io/enforce"] = "privileged"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(spec.namespace, labels)}


def service_account(spec: NetworkSpec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta("mycelium-sclerotium", common_labels(spec.name, "sclerotium"), spec.namespace),
        "automountServiceAccountToken": True,
    }


def storage_class(spec: NetworkSpec) -> Obj | None:
    """Example StorageClasses for the two K3s-side block backends (R7.1); None for 'existing'."""
    labels = common_labels(spec.name, "storage")
    if spec.storage_backend == "longhorn":
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": meta(spec.storage_class_name, labels),
            "provisioner": "driver.longhorn.io",
            "allowVolumeExpansion": True,
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
            # Longhorn's default of 3 replicas, placed on distinct nodes.
            "parameters": {
                "numberOfReplicas": "3",
                "staleReplicaTimeout": "30",
                "dataLocality": "best-effort",
            },
        }
    if spec.storage_backend == "ceph-rbd":
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": meta(spec.storage_class_name, labels),
            "provisioner": "rbd.csi.ceph.com",
            "allowVolumeExpansion": True,
            "reclaimPolicy": "Retain",
            "parameters": {
                "clusterID": "CHANGE-ME-ceph-fsid",
                "pool": "mycelium",
                "imageFeatures": "layering",
                "csi.storage.k8s.io/provisioner-secret-name": "csi-rbd-secret",
                "csi.storage.k8s.io/provisioner-secret-namespace": "ceph-csi",
                "csi.storage.k8s.io/node-stage-secret-name": "csi-rbd-secret",
                "csi.storage.k8s.io/node-stage-secret-namespace": "ceph-csi",
            },
        }
    return None


def headless_service(spec: NetworkSpec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(f"{spec.name}-sclerotia", common_labels(spec.name, "sclerotium"), spec.namespace),
        "spec": {
            "clusterIP": "None",
            # Peers must find each other before they are ready: forming the network needs it.
            "publishNotReadyAddresses": True,
            "selector": _selector(spec),
            "ports": [
                {"name": "agent", "port": spec.agent_port, "targetPort": "agent"},
                {"name": "metrics", "port": spec.metrics_port, "targetPort": "metrics"},
                {"name": "dashboard", "port": spec.dashboard_port, "targetPort": "dashboard"},
            ],
        },
    }


def pod_disruption_budget(spec: NetworkSpec) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(f"{spec.name}-sclerotia", common_labels(spec.name, "sclerotium"), spec.namespace),
        "spec": {"minAvailable": spec.min_available, "selector": {"matchLabels": _selector(spec)}},
    }


def statefulset(spec: NetworkSpec) -> Obj:
    labels = common_labels(spec.name, "sclerotium")
    resources = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    container = {
        "name": "agent",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "node",
            "start",
            "--role",
            "dedicated-sclerotium",
            "--data-dir",
            "/var/lib/mycelium",
            "--listen",
            f"0.0.0.0:{spec.agent_port}",
            "--peers-dns",
            f"{spec.name}-sclerotia.{spec.namespace}.svc",
        ],
        "env": [
            {"name": "MYCELIUM_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MYCELIUM_HOST", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "MYCELIUM_NETWORK_ID", "value": spec.network_id},
        ],
        "ports": [
            {"name": "agent", "containerPort": spec.agent_port},
            {"name": "metrics", "containerPort": spec.metrics_port},
            {"name": "dashboard", "containerPort": spec.dashboard_port},
        ],
        "resources": {"requests": resources, "limits": dict(resources)},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "dashboard"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "dashboard"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/mycelium"},
            {"name": "identity", "mountPath": "/etc/mycelium/identity", "readOnly": True},
        ],
        "securityContext": {"allowPrivilegeEscalation": True, "capabilities": {"add": ["NET_ADMIN"]}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(f"{spec.name}-sclerotium", labels, spec.namespace),
        "spec": {
            "serviceName": f"{spec.name}-sclerotia",
            "replicas": spec.sclerotia,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": _selector(spec)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "mycelium-sclerotium",
                    "terminationGracePeriodSeconds": 30,
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "labelSelector": {"matchLabels": _selector(spec)},
                                    "topologyKey": "kubernetes.io/hostname",
                                }
                            ]
                        }
                    },
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "identity",
                            "secret": {"secretName": f"{spec.name}-identity", "defaultMode": 0o400},
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": spec.storage_class_name,
                        "resources": {"requests": {"storage": spec.storage_size}},
                    },
                }
            ],
        },
    }


def render_backbone(spec: NetworkSpec) -> list[Obj]:
    objs = [namespace(spec), service_account(spec)]
    sc = storage_class(spec)
    if sc is not None:
        objs.append(sc)
    objs += [headless_service(spec), statefulset(spec), pod_disruption_budget(spec)]
    return objs
