"""Replication over meshnet's mutually authenticated streams; other networks are refused."""

from __future__ import annotations

import os

import anyio
import pytest
from prometheus_client import CollectorRegistry

import meshnet
from dram import (
    BackupCore,
    BackupServer,
    DramMetrics,
    MemoryRegion,
    PrimaryCore,
    PrimaryReplicator,
    ReplicationConfig,
    choose_tracker,
)

pytestmark = pytest.mark.integration


def test_primary_replicates_to_two_backups_over_mesh_streams() -> None:
    size = 4 << 20

    async def main() -> None:
        network = meshnet.NetworkIdentity.generate("dram-test")
        creds = {n: network.credentials_for(meshnet.NodeIdentity.generate()) for n in ("p", "b1", "b2")}
        images = {n: bytearray(size) for n in ("b1", "b2")}
        servers = {
            n: BackupServer(BackupCore(n, memoryview(images[n]), 4096, ReplicationConfig())) for n in images
        }
        with MemoryRegion.anonymous(size) as region:
            region.view[:] = os.urandom(size)
            core = PrimaryCore("p", region.pages, ReplicationConfig())
            registry = CollectorRegistry()
            async with (
                meshnet.MeshServer(creds["b1"], servers["b1"].serve) as s1,
                meshnet.MeshServer(creds["b2"], servers["b2"].serve) as s2,
                PrimaryReplicator(
                    region,
                    core,
                    choose_tracker(region).tracker,
                    scan_interval=0.01,
                    metrics=DramMetrics(registry),
                ) as rep,
            ):
                for name, srv in (("b1", s1), ("b2", s2)):
                    for i in range(2):
                        stream = await meshnet.connect(creds["p"], "127.0.0.1", srv.port)
                        assert stream.peer.node_id == creds[name].node_id  # who we stream to, verified
                        await rep.add_connection(f"{name}/{i}", name, stream)
                region.view[0:5] = b"mesh!"
                with anyio.fail_after(30):
                    while len(core.backups) < 2 or any(core.lag(b, 0).bytes for b in core.backups):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                stranger = meshnet.NetworkIdentity.generate("other").credentials_for(
                    meshnet.NodeIdentity.generate()
                )
                with pytest.raises(meshnet.HandshakeError):
                    await meshnet.connect(stranger, "127.0.0.1", s1.port)
                await anyio.sleep(0.15)  # one metrics publication after catching up
            for img in images.values():
                assert bytes(img) == bytes(region.view)
            sample = registry.get_sample_value
            assert sample("mycelium_dram_replication_lag_bytes", {"backup": "b1"}) == 0
            assert (sample("mycelium_dram_pages_sent_total") or 0) >= 2 * region.pages
            assert sample("mycelium_dram_buffer_fill_ratio") == 0
            assert (
                sample("mycelium_dram_connection_throughput_bytes_per_second", {"conn": "b1/0"}) or 0
            ) >= 0

    anyio.run(main)
