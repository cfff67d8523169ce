"""A real Alertmanager accepts what `WebhookNotifier(payload="alertmanager")` posts.

Needs the `prometheus-alertmanager` binary (Debian package of that name); skips otherwise.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

import obs

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def get_alerts(api: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{api}/api/v2/alerts", timeout=5) as response:  # noqa: S310 (local)
        alerts: list[dict[str, Any]] = json.loads(response.read())
    return alerts


@pytest.mark.skipif(
    ALERTMANAGER is None, reason="alertmanager not installed (Debian 'prometheus-alertmanager')"
)
async def test_alertmanager_receives_firing_and_resolved_alerts(tmp_path: Path, listen_port: int) -> None:
    assert ALERTMANAGER is not None
    port = listen_port
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    log = (tmp_path / "alertmanager.log").open("w")
    proc = await anyio.open_process(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=log,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        with anyio.fail_after(30):
            while True:
                assert proc.returncode is None, (tmp_path / "alertmanager.log").read_text()
                try:
                    await anyio.to_thread.run_sync(get_alerts, api)
                    break
                except OSError:
                    await anyio.sleep(0.2)

        reg = CollectorRegistry()
        peers = obs.Metrics("meshnet", registry=reg).gauge("peers", "Peers", unit="count", labels=("node",))
        rule = obs.AlertRule("FewPeers", "mycelium_meshnet_peers_count", "<", 2, severity="critical")
        evaluator = obs.AlertEvaluator(reg, [rule])
        hook = obs.WebhookNotifier(f"{api}/api/v2/alerts", payload="alertmanager")

        peers.labels(node="n1").set(0)
        await obs.run_alert_loop(evaluator, [hook], clock=time.time, iterations=1)
        (alert,) = await anyio.to_thread.run_sync(get_alerts, api)
        assert alert["labels"] == {"alertname": "FewPeers", "severity": "critical", "node": "n1"}
        assert alert["status"]["state"] == "active"
        assert alert["annotations"]["value"] == "0"

        peers.labels(node="n1").set(3)
        (resolved,) = evaluator.evaluate(time.time())
        await hook.notify(resolved)
        with anyio.fail_after(10):
            while True:
                remaining = await anyio.to_thread.run_sync(get_alerts, api)
                if not remaining:
                    break
                await anyio.sleep(0.2)
    finally:
        proc.terminate()
        with anyio.move_on_after(20) as scope:
            await proc.wait()
        if scope.cancelled_caught:
            proc.kill()
            await proc.wait()
        log.close()
