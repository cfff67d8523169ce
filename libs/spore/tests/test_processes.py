"""Real processes on loopback over meshnet's mutually authenticated TLS: 20 nodes converge, and a
SIGKILLed node is declared dead by every other node within the configured bound."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import meshnet
import spore

pytestmark = pytest.mark.integration

N = 20
CONFIG = {"probe_interval": 0.5, "probe_timeout": 0.2, "gossip_interval": 0.1, "push_pull_interval": 10.0}


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(meshnet.free_port())
    return sorted(ports)


def _views(tmp: Path) -> dict[int, dict[str, object]]:
    views = {}
    for i in range(N):
        p = tmp / f"view-{i}.json"
        if p.exists():
            views[i] = json.loads(p.read_text())
    return views


def test_twenty_processes_converge_and_a_sigkilled_node_is_declared_dead(
    tmp_path: Path, node_script: Path
) -> None:
    net = meshnet.NetworkIdentity.generate("spore-it")
    net_path = tmp_path / "network.key"
    net.save(net_path)
    ports = _free_ports(N)
    procs: list[subprocess.Popen[bytes]] = []
    logs = contextlib.ExitStack()
    try:
        for i in range(N):
            contacts = f"127.0.0.1:{ports[0]}" if i else ""
            procs.append(subprocess.Popen(
                [sys.executable, str(node_script), str(net_path), "127.0.0.1", str(ports[i]), contacts,
                 str(tmp_path / f"view-{i}.json"), json.dumps(CONFIG)],
                stdout=subprocess.DEVNULL, stderr=logs.enter_context((tmp_path / f"err-{i}.log").open("wb")),
            ))  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            views = _views(tmp_path)
            ids = {v["id"] for v in views.values()}
            if len(views) == N and all(
                sorted(k for k, s in v["states"].items() if s == "ALIVE") == sorted(ids - {v["id"]})  # type: ignore[union-attr]
                for v in views.values()
            ):
                break
            assert time.monotonic() < deadline, (
                "20 processes did not converge in 90 s: " + ((tmp_path / "err-1.log").read_text()[-2000:])
            )
            time.sleep(0.5)
        victim_index = 7
        victim = views[victim_index]["id"]
        os.kill(procs[victim_index].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        cfg = spore.GossipConfig(**CONFIG)  # type: ignore[arg-type]
        _lo, hi = cfg.suspicion_bounds(N)
        # Configured bound: one probe round over the members, the longest suspicion, dissemination.
        bound = N * cfg.probe_interval + hi + 5.0
        while True:
            views = _views(tmp_path)
            states = [v["states"].get(victim) for i, v in views.items() if i != victim_index]  # type: ignore[union-attr]
            if all(s == "DEAD" for s in states):
                break
            assert time.monotonic() - killed_at < bound, f"not declared dead within {bound:.1f} s: {states}"
            time.sleep(0.25)
        elapsed = time.monotonic() - killed_at
        for i, p in enumerate(procs):
            if i != victim_index:
                assert p.poll() is None, (
                    f"node {i} exited: " + (tmp_path / f"err-{i}.log").read_text()[-2000:]
                )
        print(f"dead everywhere {elapsed:.1f} s after SIGKILL (bound {bound:.1f} s)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait(timeout=10)
        logs.close()
