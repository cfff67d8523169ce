"""Our CustomResourceDefinitions with OpenAPI v3 schemas, and validation of instances against them.

The schemas are structural (every field typed, unknown fields pruned by the API server) so that
the operator never sees a field it does not understand.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from mycelium.k8s._labels import CRD_VERSION, GROUP, common_labels, meta
from mycelium.k8s._spec import DNS_LABEL_PATTERN, QUANTITY_PATTERN, SpecError

Obj = dict[str, Any]

_NAME = {"type": "string", "pattern": DNS_LABEL_PATTERN, "maxLength": 63}
_QTY = {"type": "string", "pattern": QUANTITY_PATTERN}
_PLACEMENT = {
    "type": "object",
    "properties": {
        "strategy": {"type": "string", "enum": ["spread", "affinity", "nodes"], "default": "spread"},
        "nodeLabels": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "nodes": {"type": "array", "items": {"type": "string"}},
    },
}

SCHEMAS: dict[str, tuple[str, str, Obj]] = {
    # kind -> (plural, scope, spec schema)
    "MyceliumNetwork": (
        "myceliumnetworks",
        "Cluster",
        {
            "type": "object",
            "required": ["networkId"],
            "properties": {
                "networkId": {"type": "string", "minLength": 1},
                "namespace": _NAME,
                "image": {"type": "string"},
                "sclerotia": {"type": "integer", "minimum": 1, "default": 3},
                "storageBackend": {"type": "string", "enum": ["longhorn", "ceph-rbd", "existing"]},
                "storageClass": {"type": "string"},
                "storageSize": _QTY,
            },
        },
    ),
    "Endophyte": (
        "endophytes",
        "Namespaced",
        {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string", "enum": ["container", "vm"]},
                "image": {"type": "string"},
                "cpus": {"type": "integer", "minimum": 1},
                "memory": _QTY,
                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                "dedicatedCpus": {"type": "boolean"},
                "hugepages": {"type": "string", "enum": ["", "2Mi", "1Gi"]},
                "dedicatedInterface": {"type": "string"},
                "replication": {
                    "type": "object",
                    "properties": {
                        "memory": {"type": "boolean", "default": True},
                        "disk": {"type": "boolean", "default": True},
                        "backups": {"type": "integer", "minimum": 1, "maximum": 7, "default": 2},
                    },
                },
                "placement": _PLACEMENT,
            },
        },
    ),
    "Endomycete": (
        "endomycetes",
        "Namespaced",
        {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 1, "default": 3},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "placement": _PLACEMENT,
            },
        },
    ),
    "ServiceSpore": (
        "servicespores",
        "Namespaced",
        {
            "type": "object",
            "required": ["serviceId", "entryPoints"],
            "properties": {
                "serviceId": {"type": "string", "minLength": 1},
                "publicKey": {"type": "string"},
                "entryPoints": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            },
        },
    ),
}


def crd(kind: str) -> Obj:
    plural, scope, spec_schema = SCHEMAS[kind]
    schema = {
        "type": "object",
        "properties": {
            "spec": spec_schema,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta(f"{plural}.{GROUP}", common_labels("crds", "crd")),
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": CRD_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def all_crds() -> list[Obj]:
    return [crd(kind) for kind in SCHEMAS]


def validate_instance(obj: Obj) -> None:
    """Check a custom resource against our CRD schema; raise SpecError naming the bad field."""
    kind = obj.get("kind")
    if kind not in SCHEMAS:
        raise SpecError(f"kind={kind!r} is not a Mycelium resource; expected one of {sorted(SCHEMAS)}")
    if obj.get("apiVersion") != f"{GROUP}/{CRD_VERSION}":
        raise SpecError(f"apiVersion={obj.get('apiVersion')!r}: expected {GROUP}/{CRD_VERSION}")
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(root)"
        raise SpecError(f"{kind} {where}: {exc.message}") from None
