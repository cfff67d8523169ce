"""Chaos: three storage nodes as processes; fio verifies while a replica is killed and restarted."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

import blockstore
import meshnet
from blockstore._remote import RemoteReplica

pytestmark = pytest.mark.integration
MiB = 1 << 20


class NodeProcess:
    """`python -m blockstore node` in its own process."""

    def __init__(self, directory: Path, network_key: Path, port: int = 0) -> None:
        self.directory = directory
        self.network_key = network_key
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "blockstore",
                "node",
                "--dir",
                str(directory),
                "--port",
                str(port),
                "--network-key",
                str(network_key),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "storage node exited before it was ready"
        self.port = int(json.loads(line)["port"])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def network(tmp_path: Path) -> tuple[meshnet.NetworkIdentity, Path]:
    net = meshnet.NetworkIdentity.generate("chaos")
    path = tmp_path / "network.json"
    net.save(path)
    return net, path


@pytest.fixture
def nodes(tmp_path: Path, network: tuple[meshnet.NetworkIdentity, Path]) -> Iterator[list[NodeProcess]]:
    started = [NodeProcess(tmp_path / f"node{i}", network[1]) for i in range(3)]
    yield started
    for n in started:
        n.stop()


def test_fio_verify_survives_replica_kill_and_restart(
    nodes: list[NodeProcess],
    network: tuple[meshnet.NetworkIdentity, Path],
    need_binary: Callable[[str], str],
) -> None:
    """Replication runs over meshnet (mutual TLS 1.3) between this process and three node processes."""
    need_binary("fio")
    creds = network[0].credentials_for(meshnet.NodeIdentity.generate())
    spec = blockstore.VolumeSpec(name="chaos", size=32 * MiB, chunk_size=MiB, replicas=3)
    holder: dict[str, blockstore.Volume] = {}

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[int]:
        async with contextlib.AsyncExitStack() as stack:
            replicas: dict[str, blockstore.Replica] = {}
            for i, n in enumerate(nodes):
                replicas[f"n{i}"] = await stack.enter_async_context(
                    RemoteReplica(f"n{i}", "127.0.0.1", n.port, spec, credentials=creds)
                )
            vol = await stack.enter_async_context(
                blockstore.Volume(spec, replicas, op_timeout=2.0, probe_interval=0.2)
            )
            holder["vol"] = vol
            server = await stack.enter_async_context(blockstore.serve_nbd({"chaos": vol}))
            yield server.port

    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serving()) as port,
    ):
        vol = holder["vol"]
        fio = subprocess.Popen(
            [
                "fio",
                "--name=chaos",
                "--ioengine=nbd",
                f"--uri=nbd://127.0.0.1:{port}/chaos",
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=16",
                "--size=8m",
                "--loops=3",
                "--verify=crc32c",
                "--verify_backlog=256",
                "--verify_fatal=1",
                "--verify_state_save=0",
                "--do_verify=1",
                "--output-format=json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        victim = nodes[1]
        victim.kill()
        deadline = time.monotonic() + 10
        while portal.call(lambda: vol.health()["n1"]) != "down" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert portal.call(lambda: vol.health()["n1"]) == "down"
        time.sleep(1.0)
        nodes[1] = NodeProcess(
            victim.directory, victim.network_key, victim.port
        )  # same data dir, same address
        out, err = fio.communicate(timeout=180)
        assert fio.returncode == 0, err
        job = json.loads(out[out.index("{") :])["jobs"][0]
        assert job["error"] == 0
        assert job["write"]["io_bytes"] >= 8 * MiB
        deadline = time.monotonic() + 30
        while set(portal.call(vol.health).values()) != {"healthy"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(portal.call(vol.health).values()) == {"healthy"}
        stats = vol.stats
        assert stats.rebuilds_completed >= 1
        assert stats.replica_failures >= 1

        async def states() -> list[list[tuple[int, bytes]]]:
            return [await r.chunk_states() for r in vol._replicas.values()]

        all_states = portal.call(states)
        assert all_states[0] == all_states[1] == all_states[2]  # replicas converged exactly


def test_node_refuses_a_peer_from_another_network(
    nodes: list[NodeProcess], need_binary: Callable[[str], str]
) -> None:
    spec = blockstore.VolumeSpec(name="chaos", size=MiB, chunk_size=MiB, replicas=1)
    stranger = meshnet.NetworkIdentity.generate("other").credentials_for(meshnet.NodeIdentity.generate())

    async def attempt() -> None:
        async with RemoteReplica("n0", "127.0.0.1", nodes[0].port, spec, credentials=stranger) as r:
            await r.ping()

    with pytest.raises(blockstore.ReplicaUnavailableError, match="n0"):
        anyio.run(attempt)
