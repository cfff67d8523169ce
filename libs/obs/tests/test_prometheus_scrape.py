"""A real Prometheus server scrapes `MetricsServer` and answers queries about our metrics.

Needs the `prometheus` binary (Debian package `prometheus`); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

import obs

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PROMETHEUS = shutil.which("prometheus")


def query(api: str, expr: str) -> list[dict[str, Any]]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our local Prometheus)
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus binary not installed (Debian package 'prometheus')"
)
async def test_a_real_prometheus_scrapes_the_endpoint(tmp_path: Path, listen_port: int) -> None:
    assert PROMETHEUS is not None
    registry = CollectorRegistry()
    m = obs.Metrics("meshnet", registry=registry)
    m.counter("handshakes_refused", "Handshakes refused", labels=("reason",)).labels(
        reason="wrong_network"
    ).inc(5)
    m.gauge("peers_connected", "Live peers", unit="count").set(3)
    m.histogram("rpc_latency", "RPC latency", unit="seconds", buckets=(0.1, 1.0)).observe(0.2)

    async with obs.MetricsServer(registry) as server:
        web_port = listen_port
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: obs\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{server.port}']\n"
        )
        log = (tmp_path / "prometheus.log").open("w")
        proc = await anyio.open_process(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = f"http://127.0.0.1:{web_port}"
        try:
            up: list[dict[str, Any]] = []
            with anyio.fail_after(60):
                while True:
                    assert proc.returncode is None, (tmp_path / "prometheus.log").read_text()
                    try:
                        up = await anyio.to_thread.run_sync(query, api, 'up{job="obs"}')
                    except OSError:
                        up = []
                    if up and up[0]["value"][1] == "1":
                        break
                    await anyio.sleep(0.5)
            refused = await anyio.to_thread.run_sync(query, api, "mycelium_meshnet_handshakes_refused_total")
            peers = await anyio.to_thread.run_sync(query, api, "mycelium_meshnet_peers_connected_count")
            buckets = await anyio.to_thread.run_sync(
                query, api, "mycelium_meshnet_rpc_latency_seconds_bucket"
            )
        finally:
            proc.terminate()
            with anyio.move_on_after(20) as scope:
                await proc.wait()
            if scope.cancelled_caught:
                proc.kill()
                await proc.wait()
            log.close()
    assert refused[0]["metric"]["reason"] == "wrong_network"
    assert refused[0]["value"][1] == "5"
    assert peers[0]["value"][1] == "3"
    assert {b["metric"]["le"]: b["value"][1] for b in buckets} == {"0.1": "0", "1.0": "1", "+Inf": "1"}
