"""Four PBFT replicas as real processes on loopback over meshnet's mutually authenticated TLS;
the leader is killed mid-load and operations keep committing after the view change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import bftconsensus as b
from meshnet import NetworkIdentity, NodeIdentity, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, object]]:
    net = NetworkIdentity.generate("bft-test")
    net.save(tmp_path / "net.json")
    replicas = [NodeIdentity.generate() for _ in range(4)]
    clients = [NodeIdentity.generate() for _ in range(2)]
    doc = {
        "replicas": {
            r.node_id: {"host": "127.0.0.1", "port": free_port(), "public_key": r.public_key.hex()}
            for r in replicas
        },
        "clients": {c.node_id: c.public_key.hex() for c in clients},
        "config": {"checkpoint_interval": 16, "watermark_window": 32, "view_change_timeout": 1.0},
    }
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for r in replicas:
            key = tmp_path / f"{r.node_id}.pem"
            r.save(key)
            procs[r.node_id] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bftconsensus",
                    "replica",
                    "--cluster",
                    str(tmp_path / "cluster.json"),
                    "--key",
                    str(key),
                    "--network",
                    str(tmp_path / "net.json"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for node, proc in procs.items():
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:  # stdout closed: the replica exited; show why
                proc.wait(timeout=10)
                assert proc.stderr is not None
                pytest.fail(f"replica {node} exited with {proc.returncode}: {proc.stderr.read()}")
            assert line.startswith(f"ready {node}"), line
        yield {"net": net, "replicas": replicas, "clients": clients, "doc": doc, "procs": procs}
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=10)


def test_operations_keep_committing_after_the_leader_is_killed(cluster) -> None:
    net: NetworkIdentity = cluster["net"]  # type: ignore[assignment]
    doc: dict = cluster["doc"]  # type: ignore[assignment]
    procs: dict[str, subprocess.Popen[str]] = cluster["procs"]  # type: ignore[assignment]
    names = list(doc["replicas"])
    addresses = {n: ("127.0.0.1", r["port"]) for n, r in doc["replicas"].items()}
    keys = {n: bytes.fromhex(r["public_key"]) for n, r in doc["replicas"].items()}
    keys.update({n: bytes.fromhex(k) for n, k in doc["clients"].items()})
    leader = names[0]
    results: dict[str, list[bytes]] = {}
    killed_at: list[float] = []
    after_kill: list[float] = []

    async def load(ident: NodeIdentity, count: int, kill_after: int | None) -> None:
        client = b.Client(ident, keys, names, retransmit=0.5)
        async with b.ClusterClient(client, net.credentials_for(ident), addresses) as cc:
            with anyio.fail_after(20):
                await cc.wait_connected()
            out = results.setdefault(ident.node_id, [])
            for i in range(count):
                if kill_after is not None and i == kill_after:
                    procs[leader].kill()
                    killed_at.append(time.monotonic())
                with anyio.fail_after(60):
                    out.append(await cc.call(f"put {ident.node_id}-{i} v{i}".encode()))
                if killed_at:
                    after_kill.append(time.monotonic())
            with anyio.fail_after(60):
                out.append(await cc.call(f"get {ident.node_id}-0".encode()))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            a, c = cluster["clients"]  # type: ignore[misc]
            tg.start_soon(load, a, 30, 10)
            tg.start_soon(load, c, 30, None)

    anyio.run(main)
    for node, out in results.items():
        assert out[:-1] == [b"ok"] * 30, node
        assert out[-1] == b"v0"
    assert procs[leader].poll() is not None  # the leader really is gone
    assert len([t for t in after_kill if t > killed_at[0]]) >= 20  # commits continued after the kill
