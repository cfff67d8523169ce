"""The operator against a real Kubernetes API server, when one is named by MYCELIUM_K8S_API.

No API server can run on our development or CI machines (K3s is not obtainable here), so this
test skips there and says so; on a machine with a cluster, point MYCELIUM_K8S_API at it (the
kubeconfig in KUBECONFIG must grant the operator's rights) and it applies a network and checks it.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.environ.get("MYCELIUM_K8S_API"),
        reason="no Kubernetes API server here: set MYCELIUM_K8S_API (and KUBECONFIG) to run against one",
    ),
]


def test_operator_creates_the_backbone_for_a_network_resource() -> None:
    lightkube = pytest.importorskip("lightkube")
    from lightkube import codecs

    from mycelium.k8s import all_crds
    from mycelium.k8s._controller import observe, run

    network: dict[str, Any] = {
        "apiVersion": "mycelium.io/v1alpha1",
        "kind": "MyceliumNetwork",
        "metadata": {"name": "ci-live"},
        "spec": {
            "networkId": "ci-live",
            "sclerotia": 1,
            "storageBackend": "existing",
            "storageClass": "local-path",
        },
    }

    async def main() -> None:
        client = lightkube.AsyncClient(field_manager="mycelium-operator")
        for crd in all_crds():
            await client.apply(codecs.from_dict(crd), field_manager="mycelium-operator", force=True)
        await anyio.sleep(2)  # let the API server serve the new kinds
        await client.apply(codecs.from_dict(network), field_manager="mycelium-operator", force=True)
        await run(client, iterations=1, report=lambda _m: None)
        _crs, observed = await observe(client)
        kinds = {key[1] for key in observed}
        assert {"StatefulSet", "Service", "PodDisruptionBudget"} <= kinds

    anyio.run(main)
