"""End to end: a real KV server process replicating to two backups; kill -9; promote; check.

Every write the primary reported as durable on the promoted backup must be in its replica, and
the writes that are missing must all lie inside the loss window the primary reported (after the
last durable version, within the reported lag). The workload then resumes from the replica.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import meshnet
from dram import BackupCore, BackupServer, ReplicationConfig, choose_promotion
from dram.kvdemo import KvStore, read_slot

pytestmark = pytest.mark.integration

REGION_MIB = 4
SLOTS = 2048


async def _read_lines(proc: anyio.abc.Process, sink: list[dict[str, Any]], ready: anyio.Event) -> None:
    assert proc.stdout is not None
    buf = b""
    async for chunk in proc.stdout:
        buf += chunk
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            msg = json.loads(line)
            sink.append(msg)
            if msg["event"] == "ready":
                ready.set()


async def _hammer(port: int, acked: dict[int, tuple[int, bytes]], stop_at: float) -> None:
    """Pipelined PUTs; records (key, value) for each acknowledged version."""
    rng = random.Random(port)
    try:
        sock = await anyio.connect_tcp("127.0.0.1", port)
        await _pipeline(sock, rng, acked, stop_at)
    except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
        return  # the primary was killed under us: expected at the end


async def _pipeline(
    sock: anyio.abc.SocketStream, rng: random.Random, acked: dict[int, tuple[int, bytes]], stop_at: float
) -> None:
    buf = b""
    n = 0
    async with sock:
        while time.monotonic() < stop_at:
            batch = []
            for _ in range(32):
                n += 1
                key = rng.randrange(SLOTS)
                batch.append((key, b"v%d" % n))
            await sock.send(b"".join(b"PUT %d %s\n" % kv for kv in batch))
            got = 0
            while got < len(batch):
                buf += await sock.receive()
                while b"\n" in buf and got < len(batch):
                    line, _, buf = buf.partition(b"\n")
                    version = int(line.split()[1])
                    acked[version] = batch[got]
                    got += 1


def test_kill_primary_promote_least_lagging_backup_and_resume(tmp_path: Path) -> None:
    mesh_dir = tmp_path

    async def main() -> None:
        size = REGION_MIB << 20
        cfg = ReplicationConfig()
        images = {name: bytearray(size) for name in ("b1", "b2")}
        servers = {
            name: BackupServer(BackupCore(name, memoryview(images[name]), 4096, cfg)) for name in ("b1", "b2")
        }
        lines: list[dict[str, Any]] = []
        acked: dict[int, tuple[int, bytes]] = {}
        # authenticated page streams: the primary gets meshnet credentials on disk
        network = meshnet.NetworkIdentity.generate("kv")
        creds = {n: network.credentials_for(meshnet.NodeIdentity.generate()) for n in ("primary", "b1", "b2")}
        creds["primary"].identity.save(mesh_dir / "node.key")
        (mesh_dir / "node.crt").write_bytes(creds["primary"].certificate.pem)
        creds["primary"].trust.save(mesh_dir / "trust.json")
        async with anyio.create_task_group() as tg, contextlib.AsyncExitStack() as stack:
            ports = {}
            for n, s in servers.items():
                mesh = await stack.enter_async_context(meshnet.MeshServer(creds[n], s.serve))
                ports[n] = mesh.port
            cmd = [
                sys.executable,
                "-m",
                "dram.kvdemo",
                "--region-mib",
                str(REGION_MIB),
                "--slots",
                str(SLOTS),
            ]
            cmd += ["--mesh-dir", str(mesh_dir)]
            for n, p in ports.items():
                cmd += ["--backup", f"{n}=127.0.0.1:{p}"]
            proc = await anyio.open_process(cmd, stderr=subprocess.DEVNULL)
            ready = anyio.Event()
            tg.start_soon(_read_lines, proc, lines, ready)
            with anyio.fail_after(30):
                await ready.wait()
            port = next(m["port"] for m in lines if m["event"] == "ready")
            await _hammer(port, acked, time.monotonic() + 1.5)
            await anyio.sleep(0.1)  # let at least one report cover the tail
            # -- kill -9 the primary mid-stream (a second hammer keeps writing while it dies)
            with anyio.move_on_after(0.5):
                async with anyio.create_task_group() as inner:
                    inner.start_soon(_hammer, port, acked, time.monotonic() + 0.3)
                    await anyio.sleep(0.15)
                    os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            await anyio.sleep(0.2)  # in-flight frames land on the backups
            tg.cancel_scope.cancel()

        reports = [m for m in lines if m["event"] == "report"]
        assert reports, "the primary never reported"
        last = reports[-1]["backups"]
        assert set(last) == {"b1", "b2"}
        watermarks = {n: s.core.watermark for n, s in servers.items()}
        winner = choose_promotion(watermarks)
        durable = last[winner]["durable"]
        assert durable > 0, f"nothing became durable: {last}"
        image = memoryview(images[winner])
        # latest acknowledged version per key, split at the durable point
        latest_durable: dict[int, int] = {}
        for version, (key, _value) in sorted(acked.items()):
            if version <= durable:
                latest_durable[key] = version
        for key, version in latest_durable.items():
            got = read_slot(image, key, SLOTS)
            assert got is not None, f"key {key}: durable version {version} missing"
            assert got[0] >= version, f"key {key}: has version {got[0]}, durable was {version}"
        lost = [v for v, (key, _val) in acked.items() if (read_slot(image, key, SLOTS) or (0, b""))[0] < v]
        # every lost write is after the reported durable point: the loss window is the reported lag
        assert all(v > durable for v in lost), (durable, sorted(lost)[:5])
        print(
            f"\nacked={len(acked)} durable={durable} lost={len(lost)} "
            f"reported lag={last[winner]['lag_bytes']} B / {last[winner]['lag_seconds'] * 1000:.1f} ms"
        )
        # -- resume the workload from the promoted replica
        from dram import MemoryRegion

        with MemoryRegion.anonymous(size) as region:
            region.view[:] = image
            kv = KvStore(region, SLOTS)
            some_key = next(iter(latest_durable))
            value = kv.get(some_key)
            assert value is not None
            assert value[0] >= latest_durable[some_key]
            kv.version = max(v for v, _ in (kv.get(k) or (0, b"") for k in range(SLOTS)))
            assert kv.put(some_key, b"after-failover") > durable
            assert kv.get(some_key) == (kv.version, b"after-failover")

    anyio.run(main)
