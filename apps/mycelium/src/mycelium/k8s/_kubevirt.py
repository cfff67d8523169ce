"""Endophyte VMs (R21) as KubeVirt VirtualMachines, with the dram replication sidecar.

CPU pinning (dedicatedCpuPlacement) and huge pages keep a replicated guest's dirty rate and
latency predictable; a dedicated interface (Multus) is added only when asked. The sidecar is a
KubeVirt hook sidecar running ``mycelium dram sidecar``, which tracks the guest's shared
file-backed RAM with dram's hash-diff tracker and streams it to the backups.
"""

from __future__ import annotations

import json
from typing import Any

from mycelium.k8s._labels import common_labels, meta
from mycelium.k8s._spec import EndophyteVMSpec, NetworkSpec

Obj = dict[str, Any]


def virtual_machine(net: NetworkSpec, vm: EndophyteVMSpec) -> Obj:
    labels = common_labels(net.name, "endophyte")
    labels["mycelium.io/service"] = vm.service
    cpu: Obj = {"cores": vm.cpus}
    if vm.dedicated_cpus:
        cpu["dedicatedCpuPlacement"] = True
        cpu["isolateEmulatorThread"] = True
    memory: Obj = {"guest": vm.memory}
    if vm.hugepages:
        memory["hugepages"] = {"pageSize": vm.hugepages}
    interfaces: list[Obj] = [{"name": "default", "masquerade": {}}]
    networks: list[Obj] = [{"name": "default", "pod": {}}]
    if vm.dedicated_interface:
        interfaces.append({"name": "dedicated", "bridge": {}})
        networks.append({"name": "dedicated", "multus": {"networkName": vm.dedicated_interface}})
    sidecar = [
        {"image": net.image, "args": ["dram", "sidecar", "--vm", vm.name, "--network", net.network_id]}
    ]
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": meta(vm.name, labels, f"svc-{vm.service}"),
        "spec": {
            "runStrategy": "Always" if vm.replicas else "Halted",
            "template": {
                "metadata": {
                    "labels": {"mycelium.io/endophyte": vm.name},
                    "annotations": {"hooks.kubevirt.io/hookSidecars": json.dumps(sidecar)},
                },
                "spec": {
                    "domain": {
                        "cpu": cpu,
                        "memory": memory,
                        "resources": {"requests": {"memory": vm.memory}},
                        "devices": {
                            "disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                            "interfaces": interfaces,
                        },
                    },
                    "networks": networks,
                    "volumes": [{"name": "root", "containerDisk": {"image": vm.disk_image}}],
                    "evictionStrategy": "LiveMigrate",
                },
            },
        },
    }
