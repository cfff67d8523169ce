"""End to end, as a person uses it: `mycelium up`, the dashboard in a real Chromium, chaos.

Starts the real main job (six node processes on loopback), opens a Sclerotium's dashboard in
headless Chromium (Debian's package, driven by Playwright), kills the Sclerotium the Hypha is
working through, and checks that the dashboard shows it dead, the rest keep serving, and the
Hypha carries on through another Sclerotium. Screenshots land in ``artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def get(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=2) as resp:
        return json.loads(resp.read())


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def mycelium(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mycelium.cli", *args, "--dir", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("mycelium-home")
    log = open(home / "up.log", "w")  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mycelium.cli", "up", "--dir", str(home / "net")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: "is up" in (home / "up.log").read_text(), 90, "`mycelium up` to report the network up"
        )
        state = json.loads((home / "net" / "network.json").read_text())
        yield {"home": home / "net", "state": state, "proc": proc}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert not (home / "net" / "network.json").exists(), "Ctrl-C should stop every node and clean up"


def node(network: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in network["state"]["nodes"] if n["name"] == name)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Chromium is not installed (Debian packages chromium and chromium-driver)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


def test_cli_sees_the_running_network(network: dict[str, Any]) -> None:
    nodes = mycelium("--json", "nodes", home=network["home"])
    assert nodes.returncode == 0, nodes.stderr
    rows = json.loads(nodes.stdout)
    assert {r["name"] for r in rows} == {
        "sclerotium-1",
        "sclerotium-2",
        "sclerotium-3",
        "rhizomorph-1",
        "rhizomorph-2",
        "hypha-1",
    }
    assert all(r["process"] == "running" for r in rows)
    status = mycelium("status", home=network["home"])
    assert "6 alive" in status.stdout
    bad = mycelium("kill", "no-such-node", home=network["home"])
    assert bad.returncode == 2
    assert "no node named" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_dashboard_shows_every_node_and_a_killed_sclerotium(network: dict[str, Any], browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    hypha = node(network, "hypha-1")
    wait_for(lambda: get(hypha["http"], "/api/status")["serving_via"] != "", 30, "the Hypha to do work")
    victim_name = get(hypha["http"], "/api/status")["serving_via"]
    observer = next(
        n for n in network["state"]["nodes"] if n["role"].endswith("sclerotium") and n["name"] != victim_name
    )

    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"http://{observer['http']}/")
    page.wait_for_function("document.querySelectorAll('#topology g.node').length === 6", timeout=30_000)
    names = set(page.eval_on_selector_all("#topology g.node", "els => els.map(e => e.dataset.name)"))
    assert names == {n["name"] for n in network["state"]["nodes"]}
    page.wait_for_function("document.querySelectorAll('#topology g.node.alive').length === 6", timeout=30_000)
    # The Global DB's master list holds all three Sclerotia, each with a live lease.
    # (Rhizomorphs promoted to Dynamic Sclerotia by the placement policy, which happens when the
    # machine is loaded, join the list too: at least the three dedicated ones must be there.)
    page.wait_for_function(
        "document.querySelectorAll('#master-list tr[data-node-id]').length >= 3", timeout=30_000
    )
    dedicated = {
        n["node_id"]
        for n in get(observer["http"], "/api/network")["nodes"]
        if n["name"].startswith("sclerotium")
    }
    wait_for(
        lambda: dedicated <= set(get(observer["http"], "/api/network")["globaldb"].get("alive", [])),
        30,
        "the three dedicated Sclerotia to hold liveness leases",
    )
    # ...and the Primary Spore (on the same Global DB) admits the three countersigned Sclerotia.
    wait_for(
        lambda: (
            len(get(observer["http"], "/api/network")["globaldb"].get("primary", {}).get("members", [])) == 3
        ),
        30,
        "the Primary Spore to hold the three Sclerotia",
    )
    assert get(observer["http"], "/api/network")["globaldb"]["primary"]["reachable"]
    # The Rhizomorphs and the Hypha see each other in the Latent Spore (spore's signed gossip).
    for name in ("rhizomorph-1", "rhizomorph-2", "hypha-1"):
        wait_for(
            lambda name=name: get(node(network, name)["http"], "/api/status")["latent_alive"] == 2,
            30,
            f"{name} to see the two other semi-nodes alive in the Latent Spore",
        )
    page.screenshot(path=str(ARTIFACTS / "dashboard-formed.png"))

    work_before = get(hypha["http"], "/api/status")["work_done"]
    victim_id = next(
        n["node_id"] for n in get(observer["http"], "/api/network")["nodes"] if n["name"] == victim_name
    )
    killed = mycelium("kill", victim_name, home=network["home"])
    assert killed.returncode == 0, killed.stderr

    page.wait_for_function(
        f"document.querySelector('#topology g.node[data-name=\"{victim_name}\"]')?.dataset.state === 'dead'",
        timeout=30_000,
    )
    # The node_down alert rule (obs, evaluated on every Sclerotium) fires for it, once.
    page.wait_for_function(
        f"document.querySelector('#alerts').innerText.includes('node_down: {victim_name}')", timeout=30_000
    )
    assert page.inner_text("#alerts").count(victim_name) == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-after-kill.png"))

    # The Hypha keeps working, through another Sclerotium.
    wait_for(
        lambda: (
            get(hypha["http"], "/api/status")["serving_via"] not in ("", victim_name)
            and get(hypha["http"], "/api/status")["work_done"] > work_before + 3
        ),
        30,
        "the Hypha to carry on through another Sclerotium",
    )
    # The rest of the network still serves.
    view = get(observer["http"], "/api/network")
    assert view["counts"]["alive"] == 5
    # The killed Sclerotium's liveness lease (10 s TTL) expires in the Global DB.
    wait_for(
        lambda: victim_id not in get(observer["http"], "/api/network")["globaldb"].get("alive", [victim_id]),
        30,
        "the killed Sclerotium's liveness entry to expire",
    )
    page.close()
