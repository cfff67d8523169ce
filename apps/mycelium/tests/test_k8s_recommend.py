"""`mycelium recommend`: the deployment model for an app, from each input format, with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mycelium.cli import main
from mycelium.k8s._recommend import RecommendError, Workload, read_description, recommend, recommend_file


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_stateless_replicated_app_is_an_endomycete() -> None:
    rec = recommend(Workload(name="web", replicas=3))
    assert rec.model == "Endomycete"
    assert any("3 replicas" in r for r in rec.reasons)


def test_stateful_single_instance_is_a_shared_endophyte() -> None:
    rec = recommend(Workload(name="db", stateful=True))
    assert (rec.model, rec.vdc) == ("Endophyte", "shared")


@pytest.mark.parametrize(
    "workload",
    [
        Workload(name="a", privileged=True),
        Workload(name="b", host_access=True, replicas=3),
        Workload(name="c", foreign_os="windows"),
        Workload(name="d", stateful=True, cpus=16),
    ],
)
def test_isolation_or_size_means_a_dedicated_vdc(workload: Workload) -> None:
    rec = recommend(workload)
    assert (rec.model, rec.vdc) == ("Endophyte", "dedicated")


def test_high_security_moves_even_a_distributed_app_to_a_dedicated_vdc() -> None:
    assert recommend(Workload(name="web", replicas=3), security="high").vdc == "dedicated"


def test_compose_file(tmp_path: Path) -> None:
    compose = write(
        tmp_path,
        "compose.yaml",
        """
services:
  web:
    image: nginx
    deploy: {replicas: 4}
  db:
    image: postgres
    volumes: [pgdata:/var/lib/postgresql/data]
  agent:
    image: monitor
    network_mode: host
volumes: {pgdata: {}}
""",
    )
    recs = {r.workload: r for r in recommend_file(compose)}
    assert recs["web"].model == "Endomycete"
    assert (recs["db"].model, recs["db"].vdc) == ("Endophyte", "shared")
    assert recs["agent"].vdc == "dedicated"


def test_kubernetes_manifests(tmp_path: Path) -> None:
    manifest = write(
        tmp_path,
        "app.yaml",
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 3
  template: {spec: {containers: [{name: api, image: api:1}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store}
spec:
  replicas: 1
  template: {spec: {containers: [{name: s, image: s:1, resources: {limits: {cpu: "2", memory: 64Gi}}}]}}
""",
    )
    recs = {r.workload: r for r in recommend_file(manifest)}
    assert recs["api"].model == "Endomycete"
    assert recs["store"].vdc == "dedicated"  # 64 GiB is large


def test_oci_image_config(tmp_path: Path) -> None:
    cfg = write(tmp_path, "config.json", json.dumps({"architecture": "amd64", "os": "windows", "config": {}}))
    (rec,) = recommend_file(cfg)
    assert rec.vdc == "dedicated"
    assert any("windows" in r for r in rec.reasons)


@pytest.mark.parametrize("text", ["[1, 2]", "just: a mapping", ": : :\n  - ["])
def test_unreadable_descriptions_get_a_clear_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(RecommendError):
        read_description(write(tmp_path, "x.yaml", text))


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "c.yaml", "services: {web: {image: x, deploy: {replicas: 2}}}")
    assert main(["--json", "recommend", str(path)]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["model"] == "Endomycete"
