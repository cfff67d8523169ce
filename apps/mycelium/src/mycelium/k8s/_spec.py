"""What the user asks Kubernetes for: the attrs classes every renderer reads.

These are the single source of truth for a deployment: the CLI builds them from flags or a TOML
file, the operator builds them from a MyceliumNetwork / Endophyte / Endomycete custom resource.
Validators reject bad input at construction with a message naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import attrs

from mycelium._errors import MyceliumError

#: The Kubernetes minor version every rendered object is validated against (K3s v1.31 line).
KUBERNETES_VERSION = "1.31"

#: Shared with the CRD schemas (``_crds``), so the CLI and the API server accept the same values.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_QUANTITY = re.compile(QUANTITY_PATTERN)


class SpecError(MyceliumError):
    """A deployment spec field has a value Kubernetes (or we) would refuse."""


def _dns_label(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not (isinstance(value, str) and len(value) <= 63 and _DNS_LABEL.match(value)):
        raise SpecError(
            f"{attribute.name}={value!r} is not a valid name: use 1-63 lower-case letters, digits"
            " and '-', starting and ending with a letter or digit"
        )


def _quantity(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not (isinstance(value, str) and _QUANTITY.match(value)):
        raise SpecError(f"{attribute.name}={value!r} is not a Kubernetes quantity (e.g. '500m', '2', '4Gi')")


def _positive(minimum: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise SpecError(f"{attribute.name}={value!r} must be an integer >= {minimum}")

    return check


StorageBackend = Literal["longhorn", "ceph-rbd", "existing"]
PlacementStrategy = Literal["spread", "affinity", "nodes"]


@attrs.frozen
class Resources:
    """Requests equal limits by default: Sclerotia are Guaranteed-QoS so eviction never picks them."""

    cpu: str = attrs.field(default="1", validator=_quantity)
    memory: str = attrs.field(default="2Gi", validator=_quantity)


@attrs.frozen
class NetworkSpec:
    """A Mycelium network on one Kubernetes cluster: the Sclerotia StatefulSet and its fabric."""

    name: str = attrs.field(validator=_dns_label)
    network_id: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    namespace: str = attrs.field(default="mycelium-system", validator=_dns_label)
    image: str = attrs.field(default="ghcr.io/mycelium/mycelium:0.1.0")
    sclerotia: int = attrs.field(default=3, validator=_positive(1))
    storage_backend: StorageBackend = attrs.field(default="longhorn")
    storage_class: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    storage_size: str = attrs.field(default="20Gi", validator=_quantity)
    resources: Resources = attrs.field(factory=Resources)
    agent_port: int = attrs.field(default=7400)
    metrics_port: int = attrs.field(default=9464)
    dashboard_port: int = attrs.field(default=8480)

    @storage_backend.validator
    def _check_backend(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in ("longhorn", "ceph-rbd", "existing"):
            raise SpecError(f"{attribute.name}={value!r}: choose longhorn, ceph-rbd or existing")
        if value == "existing" and not self.storage_class:
            raise SpecError("storage_backend='existing' needs storage_class to name the StorageClass")

    @property
    def storage_class_name(self) -> str:
        if self.storage_class:
            return self.storage_class
        return {"longhorn": "mycelium-longhorn", "ceph-rbd": "mycelium-ceph-rbd"}.get(
            self.storage_backend, self.storage_backend
        )

    @property
    def min_available(self) -> int:
        """Keep a Raft majority of Sclerotia up through voluntary disruptions (drains)."""
        return self.sclerotia // 2 + 1


@attrs.frozen
class ServiceQuota:
    cpu: str = attrs.field(default="4", validator=_quantity)
    memory: str = attrs.field(default="8Gi", validator=_quantity)
    pods: int = attrs.field(default=20, validator=_positive(1))
    storage: str = attrs.field(default="100Gi", validator=_quantity)


@attrs.frozen
class Placement:
    """Where a service's pods may run: spread automatically, custom affinity rules, or named nodes."""

    strategy: PlacementStrategy = "spread"
    #: for "affinity": node label key -> allowed values (all must match)
    node_labels: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: for "nodes": the node names to pin to
    nodes: tuple[str, ...] = ()
    topology_key: str = "kubernetes.io/hostname"

    def __attrs_post_init__(self) -> None:
        if self.strategy not in ("spread", "affinity", "nodes"):
            raise SpecError(f"placement.strategy={self.strategy!r}: choose spread, affinity or nodes")
        if self.strategy == "nodes" and not self.nodes:
            raise SpecError("placement.strategy='nodes' needs at least one node in placement.nodes")
        if self.strategy == "affinity" and not self.node_labels:
            raise SpecError("placement.strategy='affinity' needs placement.node_labels")


@attrs.frozen
class ServiceSpec:
    """One independent service: its own namespace, quota, default-deny network and placement."""

    name: str = attrs.field(validator=_dns_label)
    owners: tuple[str, ...] = ()  # user or group names bound to the service-owner role
    quota: ServiceQuota = attrs.field(factory=ServiceQuota)
    placement: Placement = attrs.field(factory=Placement)

    @property
    def namespace(self) -> str:
        return f"svc-{self.name}"[:63]


@attrs.frozen
class EndophyteVMSpec:
    """A standard VM made highly available by the network (KubeVirt), with its dram sidecar."""

    name: str = attrs.field(validator=_dns_label)
    service: str = attrs.field(validator=_dns_label)
    cpus: int = attrs.field(default=2, validator=_positive(1))
    memory: str = attrs.field(default="4Gi", validator=_quantity)
    disk_image: str = "quay.io/containerdisks/debian:12"
    dedicated_cpus: bool = True
    hugepages: str = attrs.field(default="", validator=attrs.validators.in_(("", "2Mi", "1Gi")))
    dedicated_interface: str = ""  # a Multus NetworkAttachmentDefinition name, when asked
    replicas: int = attrs.field(default=1, validator=_positive(0))
