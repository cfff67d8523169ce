"""Labels and names shared by every rendered object; the operator owns what carries MANAGED_BY."""

from __future__ import annotations

GROUP = "mycelium.io"
CRD_VERSION = "v1alpha1"
MANAGED_BY = "mycelium-operator"
MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
PART_OF_KEY = "app.kubernetes.io/part-of"
NETWORK_KEY = f"{GROUP}/network"
COMPONENT_KEY = "app.kubernetes.io/component"


def common_labels(network: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "mycelium",
        "app.kubernetes.io/instance": network,
        COMPONENT_KEY: component,
        PART_OF_KEY: "mycelium",
        MANAGED_BY_KEY: MANAGED_BY,
        NETWORK_KEY: network,
    }


def meta(name: str, labels: dict[str, str], namespace: str | None = None) -> dict[str, object]:
    m: dict[str, object] = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        m["namespace"] = namespace
    return m
