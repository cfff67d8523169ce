"""Kubernetes (K3s) packaging: deployment specs, manifest rendering, validation and the operator.

Everything here is pure (specs in, objects out) except the operator's controller loop and the
installer's file operations, which sit in their own modules.
"""

from mycelium.k8s._crds import all_crds, crd, validate_instance
from mycelium.k8s._render import key_of, render, to_yaml
from mycelium.k8s._services import endomycete_deployment, placement_fragment
from mycelium.k8s._spec import (
    KUBERNETES_VERSION,
    EndophyteVMSpec,
    NetworkSpec,
    Placement,
    Resources,
    ServiceQuota,
    ServiceSpec,
    SpecError,
)
from mycelium.k8s._validate import ValidationUnavailableError, validate_object

__all__ = [
    "KUBERNETES_VERSION",
    "EndophyteVMSpec",
    "NetworkSpec",
    "Placement",
    "Resources",
    "ServiceQuota",
    "ServiceSpec",
    "SpecError",
    "ValidationUnavailableError",
    "all_crds",
    "crd",
    "endomycete_deployment",
    "key_of",
    "placement_fragment",
    "render",
    "to_yaml",
    "validate_instance",
    "validate_object",
]
