"""Rendered manifests: valid for the stated Kubernetes version, and saying what the design needs."""

from __future__ import annotations

from typing import Any

import pytest

from mycelium.k8s import (
    EndophyteVMSpec,
    NetworkSpec,
    Placement,
    ServiceSpec,
    SpecError,
    endomycete_deployment,
    placement_fragment,
    render,
    to_yaml,
    validate_instance,
    validate_object,
)

pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

NET = NetworkSpec(name="demo", network_id="net-1")
SERVICES = [
    ServiceSpec(name="shop", owners=("alice",)),
    ServiceSpec(name="db", placement=Placement(strategy="nodes", nodes=("host-1", "host-2"))),
    ServiceSpec(name="ml", placement=Placement(strategy="affinity", node_labels={"gpu": ("yes",)})),
]
VMS = [EndophyteVMSpec(name="legacy", service="shop", hugepages="2Mi", dedicated_interface="fastnet")]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize("backend", ["longhorn", "ceph-rbd"])
def test_every_rendered_object_validates_against_the_official_schemas(backend: str) -> None:
    net = NetworkSpec(name="demo", network_id="net-1", storage_backend=backend)  # type: ignore[arg-type]
    objs = render(net, SERVICES, VMS)
    for obj in objs:
        validate_object(obj)
    assert {o["kind"] for o in objs} >= {
        "CustomResourceDefinition",
        "StatefulSet",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "ClusterRole",
        "Role",
        "RoleBinding",
        "VirtualMachine",
        "StorageClass",
    }


def test_the_validator_rejects_an_unknown_field() -> None:
    (sts,) = by_kind(render(NET), "StatefulSet")
    sts["spec"]["replicaz"] = 3
    with pytest.raises(SpecError, match="replicaz"):
        validate_object(sts)


def test_sclerotia_require_separate_hosts() -> None:
    network = NetworkSpec(name="demo", sclerotia=5)
    (sts,) = by_kind(render(network), "StatefulSet")
    assert sts["spec"]["replicas"] == network.sclerotia
    terms = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms[0]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        terms[0]["labelSelector"]["matchLabels"].items()
        <= sts["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize(("replicas", "min_available"), [(1, 1), (3, 2), (4, 3), (5, 3)])
def test_disruption_budget_keeps_a_majority(replicas: int, min_available: int) -> None:
    (pdb,) = by_kind(render(NetworkSpec(name="demo", sclerotia=replicas)), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == min_available


def test_probes_and_storage_class_are_wired() -> None:
    (sts,) = by_kind(render(NetworkSpec(name="demo", storage_backend="ceph-rbd")), "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "mycelium-ceph-rbd"


def test_each_service_gets_a_default_deny_namespace_with_quota() -> None:
    objs = render(NET, SERVICES)
    for svc in SERVICES:
        in_ns = [o for o in objs if o["metadata"].get("namespace") == svc.namespace]
        policies = by_kind(in_ns, "NetworkPolicy")
        deny = [p for p in policies if p["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}]
        assert deny, f"no default-deny policy in {svc.namespace}"
        assert by_kind(in_ns, "ResourceQuota")
        assert by_kind(in_ns, "LimitRange")


def test_service_owners_get_no_cluster_wide_rights() -> None:
    objs = render(NET, SERVICES)
    cluster_bindings = by_kind(objs, "ClusterRoleBinding")
    subjects = [s["name"] for b in cluster_bindings for s in b["subjects"]]
    assert "alice" not in subjects
    (binding,) = [b for b in by_kind(objs, "RoleBinding") if any(s["name"] == "alice" for s in b["subjects"])]
    assert binding["metadata"]["namespace"] == "svc-shop"


def test_network_admins_have_no_rights_in_service_namespaces() -> None:
    objs = render(NET, SERVICES)
    admin_roles = [r for r in by_kind(objs, "Role") if r["metadata"]["name"] == "mycelium-fabric-admin"]
    assert [r["metadata"]["namespace"] for r in admin_roles] == [NET.namespace]
    (cluster_role,) = [
        r for r in by_kind(objs, "ClusterRole") if r["metadata"]["name"] == "mycelium-network-admin"
    ]
    resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    assert not resources & {"pods", "secrets", "deployments", "*"}


def test_placement_strategies() -> None:
    labels = {"app": "x"}
    spread = placement_fragment(Placement(), labels)
    assert spread["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == labels
    pinned = placement_fragment(Placement(strategy="nodes", nodes=("h1",)), labels)
    expr = pinned["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert expr["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["h1"]
    dep = endomycete_deployment(NET, SERVICES[2], "trainer", "img:1", 2, 8080)
    validate_object(dep)
    affinity = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    term = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0] == {"key": "gpu", "operator": "In", "values": ["yes"]}


def test_vm_spec_pins_cpus_uses_hugepages_and_carries_the_dram_sidecar() -> None:
    (vm,) = by_kind(render(NET, [], VMS), "VirtualMachine")
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert domain["cpu"]["dedicatedCpuPlacement"] is True
    assert domain["memory"]["hugepages"] == {"pageSize": "2Mi"}
    assert "dram" in vm["spec"]["template"]["metadata"]["annotations"]["hooks.kubevirt.io/hookSidecars"]
    nets = vm["spec"]["template"]["spec"]["networks"]
    assert {"name": "dedicated", "multus": {"networkName": "fastnet"}} in nets


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "ok", "sclerotia": 0}, "sclerotia"),
        ({"name": "ok", "storage_size": "lots"}, "storage_size"),
        ({"name": "ok", "storage_backend": "nfs"}, "storage_backend"),
        ({"name": "ok", "storage_backend": "existing"}, "storage_class"),
    ],
)
def test_bad_spec_fields_are_named(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=field):
        NetworkSpec(**kwargs)


def test_custom_resources_are_checked_against_our_crd_schemas() -> None:
    good = {
        "apiVersion": "mycelium.io/v1alpha1",
        "kind": "Endomycete",
        "metadata": {"name": "a"},
        "spec": {"image": "x"},
    }
    validate_instance(good)
    bad = {**good, "spec": {"image": "x", "replicas": 0}}
    with pytest.raises(SpecError, match="replicas"):
        validate_instance(bad)


def test_yaml_output_is_a_multi_document_stream() -> None:
    import yaml

    docs = list(yaml.safe_load_all(to_yaml(render(NET))))
    assert [d["kind"] for d in docs] == [o["kind"] for o in render(NET)]
