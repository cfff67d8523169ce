"""A real partition between network namespaces (meshnet.testhosts, nftables) and its healing:
each side declares the other dead, the partition evidence names who is unreachable, and after
healing every node sees every other alive again. Needs root; skips otherwise."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import meshnet
from meshnet.testhosts import HostNetwork, netns_unavailable_reason

pytestmark = pytest.mark.integration

CONFIG = {"probe_interval": 0.5, "probe_timeout": 0.2, "gossip_interval": 0.1, "push_pull_interval": 5.0}
PORT = 7400


def _views(tmp: Path, n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        p = tmp / f"view-{i}.json"
        if p.exists():
            out.append(json.loads(p.read_text()))
    return out


def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.3)


@pytest.mark.skipif(netns_unavailable_reason() is not None, reason=str(netns_unavailable_reason()))
def test_a_partition_between_hosts_splits_the_view_and_healing_reunites_it(
    tmp_path: Path, node_script: Path
) -> None:
    n = 4
    net = meshnet.NetworkIdentity.generate("spore-netns")
    key = tmp_path / "network.key"
    net.save(key)
    with HostNetwork(n) as hosts:
        h = list(hosts.hosts)
        for i, host in enumerate(h):
            contacts = f"{h[0].address}:{PORT}" if i else ""
            host.spawn([sys.executable, str(node_script), str(key), host.address, str(PORT), contacts,
                        str(tmp_path / f"view-{i}.json"), json.dumps(CONFIG)])  # fmt: skip

        def states() -> dict[str, dict[str, str]]:
            return {str(v["id"]): v["states"] for v in _views(tmp_path, n)}  # type: ignore[misc]

        def all_alive() -> bool:
            s = states()
            return len(s) == n and all(
                sorted(k for k, st in view.items() if st == "ALIVE") == sorted(set(s) - {me})
                for me, view in s.items()
            )

        _until(all_alive, 60, "convergence of 4 hosts")
        ids = [str(v["id"]) for v in _views(tmp_path, n)]
        left, right = set(ids[:2]), set(ids[2:])
        hosts.partition(h[:2], h[2:])

        def split() -> bool:
            s = states()
            return all(
                s[a].get(b) == "DEAD"
                for side, other in ((left, right), (right, left))
                for a in side
                for b in other
            ) and all(s[a].get(b) == "ALIVE" for side in (left, right) for a in side for b in side if a != b)

        _until(split, 60, "each side declaring the other dead")
        evidence = {str(v["id"]): set(v["unreachable"]) for v in _views(tmp_path, n)}  # type: ignore[call-overload]
        for side, other in ((left, right), (right, left)):
            for a in side:
                assert evidence[a] & other, f"{a} reports no unreachable member across the partition"
        hosts.heal()
        _until(all_alive, 90, "reunion after healing")
        for host in h:
            for proc in host.processes:
                assert proc.running, proc.output()[-2000:]
