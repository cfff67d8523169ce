"""Offline validation of rendered objects against the official Kubernetes OpenAPI schemas.

Core kinds are checked with ``kubernetes-validate`` (the upstream JSON schemas of each Kubernetes
release, strict: unknown fields are errors) for :data:`KUBERNETES_VERSION`. Our own custom
resources are checked against our CRD schemas. KubeVirt's VirtualMachine has no schema shipped
offline; it is checked against the subset of KubeVirt's API we use (a documented gap).
"""

from __future__ import annotations

from typing import Any

from mycelium.k8s._crds import SCHEMAS, validate_instance
from mycelium.k8s._spec import KUBERNETES_VERSION, SpecError

Obj = dict[str, Any]

_VM_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kubevirt.io/v1"},
        "spec": {
            "type": "object",
            "required": ["template"],
            "properties": {
                "runStrategy": {"enum": ["Always", "Halted", "Manual", "RerunOnFailure", "Once"]},
                "template": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["domain"],
                            "properties": {
                                "domain": {
                                    "type": "object",
                                    "required": ["devices"],
                                    "properties": {
                                        "cpu": {
                                            "type": "object",
                                            "properties": {
                                                "cores": {"type": "integer", "minimum": 1},
                                                "dedicatedCpuPlacement": {"type": "boolean"},
                                                "isolateEmulatorThread": {"type": "boolean"},
                                            },
                                            "additionalProperties": False,
                                        },
                                        "memory": {
                                            "type": "object",
                                            "properties": {
                                                "guest": {"type": "string"},
                                                "hugepages": {
                                                    "type": "object",
                                                    "properties": {"pageSize": {"type": "string"}},
                                                    "additionalProperties": False,
                                                },
                                            },
                                            "additionalProperties": False,
                                        },
                                    },
                                },
                                "evictionStrategy": {
                                    "enum": ["LiveMigrate", "LiveMigrateIfPossible", "None", "External"]
                                },
                            },
                        }
                    },
                },
            },
        },
    },
}


class ValidationUnavailableError(SpecError):
    """The offline Kubernetes schemas are not installed (pip install kubernetes-validate)."""


def validate_object(obj: Obj, version: str = KUBERNETES_VERSION) -> None:
    """Raise SpecError naming the object and field when ``obj`` is not valid for ``version``."""
    kind = obj.get("kind", "")
    name = obj.get("metadata", {}).get("name", "?")
    if kind in SCHEMAS:
        validate_instance(obj)
        return
    if obj.get("apiVersion") == "kubevirt.io/v1":
        import jsonschema

        try:
            jsonschema.validate(obj, _VM_SCHEMA)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path)
            raise SpecError(f"VirtualMachine {name} {where}: {exc.message}") from None
        return
    try:
        import kubernetes_validate
    except ImportError:
        raise ValidationUnavailableError(
            "validating against the Kubernetes schemas needs the kubernetes-validate package"
        ) from None
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise SpecError(f"{kind} {name} {where}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise SpecError(f"{kind} {name}: no Kubernetes {version} schema ({exc})") from None
