"""A small key-value server whose whole state lives in a replicated memory region.

``python -m dram.kvdemo --mesh-dir DIR --backup b1=127.0.0.1:7001 --backup b2=127.0.0.1:7002``
(backups behind ``meshnet.MeshServer`` running ``BackupServer.serve``) serves a line
protocol on TCP (``PUT <key> <value>`` -> ``OK <version>``, ``GET <key>`` -> ``VAL <version>
<value>``) and prints JSON lines to stdout: ``ready`` (port, tracker) and a ``report`` every
``--report-interval`` seconds with, per backup, the replication lag and ``durable``: the highest
write version such that every acknowledged write up to it is applied on that backup.

``--mesh-dir`` holds this node's meshnet identity (``node.key``), certificate (``node.crt``) and
network trust (``trust.json``): page streams then run over mutually authenticated TLS 1.3.
Without it the demo falls back to plain, unauthenticated TCP framing (loopback testing only).

The store is slots of 64 bytes (version, key, 40-byte value, crc32): a replica image can be read
back with :func:`read_slot`, which is what a promoted replica does to resume the workload.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from pathlib import Path

import anyio
from anyio.abc import SocketStream

import meshnet

from ._actions import ReplicationConfig
from ._buffer import BufferConfig
from ._driver import PrimaryReplicator, ScanReport
from ._primary import PrimaryCore
from ._region import MemoryRegion
from ._select import choose_tracker
from ._stream import FrameStream, connect_tcp
from ._throttle import CooperativeThrottle

__all__ = ["SLOT", "KvStore", "read_slot", "main"]

SLOT = 64
_REC = struct.Struct("<QQ40sI")  # version, key, value, crc32(version|key|value)


def read_slot(image: memoryview | bytes, key: int, slots: int) -> tuple[int, bytes] | None:
    """(version, value) stored for ``key`` in an image, None if empty or corrupt."""
    off = (key % slots) * SLOT
    version, k, value, crc = _REC.unpack_from(image, off)
    if version == 0 or k != key or zlib.crc32(bytes(image[off : off + 56])) != crc:
        return None
    return version, value.rstrip(b"\0")


class KvStore:
    """Slots in a memory region; ``version`` counts acknowledged writes (1, 2, ...)."""

    def __init__(self, region: MemoryRegion, slots: int) -> None:
        if slots * SLOT > region.size:
            raise ValueError(f"{slots} slots need {slots * SLOT} bytes, the region has {region.size}")
        self.region = region
        self.slots = slots
        self.version = 0

    def put(self, key: int, value: bytes) -> int:
        if len(value) > 40:
            raise ValueError("value longer than 40 bytes")
        self.version += 1
        off = (key % self.slots) * SLOT
        head = struct.pack("<QQ40s", self.version, key, value)
        self.region.view[off : off + 60] = head + struct.pack("<I", zlib.crc32(head))
        return self.version

    def get(self, key: int) -> tuple[int, bytes] | None:
        return read_slot(self.region.view, key, self.slots)


async def _serve_client(sock: SocketStream, kv: KvStore, gate: CooperativeThrottle) -> None:
    buf = b""
    async with sock:
        while True:
            try:
                chunk = await sock.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            buf += chunk
            if len(buf) > 1 << 16:
                return
            out: list[bytes] = []
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                parts = line.split()
                await gate.gate()
                if len(parts) == 3 and parts[0] == b"PUT" and parts[1].isdigit():
                    out.append(b"OK %d\n" % kv.put(int(parts[1]), parts[2][:40]))
                elif len(parts) == 2 and parts[0] == b"GET" and parts[1].isdigit():
                    got = kv.get(int(parts[1]))
                    out.append(b"VAL %d %s\n" % got if got else b"NONE\n")
                else:
                    out.append(b"ERR expected PUT <key> <value> or GET <key>\n")
            if out:
                await sock.send(b"".join(out))


async def run(args: argparse.Namespace) -> None:
    region = MemoryRegion.anonymous(args.region_mib << 20)
    kv = KvStore(region, args.slots)
    choice = choose_tracker(region)
    config = ReplicationConfig(buffer=BufferConfig(capacity_bytes=args.buffer_mib << 20))
    core = PrimaryCore("primary", region.pages, config)
    gate = CooperativeThrottle()
    scans: list[tuple[int, int]] = []  # (kv version at scan, buffer seq after the scan)

    def on_scan(report: ScanReport) -> None:
        scans.append((kv.version, report.seq))
        if len(scans) > 10000:
            del scans[:5000]

    async with PrimaryReplicator(
        region, core, choice.tracker, actuator=gate, scan_interval=args.scan_interval, on_scan=on_scan
    ) as rep:
        creds = _load_credentials(args.mesh_dir) if args.mesh_dir else None
        for spec in args.backup:
            name, _, addr = spec.partition("=")
            host, _, port = addr.rpartition(":")
            for i in range(args.connections):
                stream: FrameStream
                if creds is not None:
                    stream = await meshnet.connect(creds, host, int(port))
                else:
                    stream = await connect_tcp(host, int(port), core.limits.max_frame)
                await rep.add_connection(f"{name}/{i}", name, stream)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=args.port)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
        _emit({"event": "ready", "port": port, "tracker": choice.tracker.name, "rejected": choice.rejected})
        async with anyio.create_task_group() as tg:

            async def handle(sock: SocketStream) -> None:
                await _serve_client(sock, kv, gate)

            tg.start_soon(listener.serve, handle)
            while True:
                await anyio.sleep(args.report_interval)
                now = rep.clock()
                backups: dict[str, object] = {}
                for b in core.backups:
                    lag = core.lag(b, now)
                    durable = max((v for v, seq in scans if seq <= lag.replicated_seq), default=0)
                    backups[b] = {"durable": durable, "lag_bytes": lag.bytes, "lag_seconds": lag.seconds}
                _emit({"event": "report", "acked": kv.version, "backups": backups})


def _load_credentials(directory: str) -> meshnet.MeshCredentials:
    base = Path(directory)
    return meshnet.MeshCredentials(
        meshnet.NodeIdentity.load(base / "node.key"),
        meshnet.NodeCertificate.from_pem((base / "node.crt").read_bytes()),
        meshnet.NetworkTrust.load(base / "trust.json"),
    )


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dram.kvdemo", description=__doc__.split("\n\n")[0])
    p.add_argument("--backup", action="append", default=[], help="name=host:port of a backup (repeat)")
    p.add_argument("--connections", type=int, default=2, help="parallel connections per backup")
    p.add_argument("--region-mib", type=int, default=8)
    p.add_argument("--slots", type=int, default=4096)
    p.add_argument("--buffer-mib", type=int, default=16)
    p.add_argument("--scan-interval", type=float, default=0.01)
    p.add_argument("--report-interval", type=float, default=0.02)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mesh-dir", help="meshnet node.key, node.crt, trust.json (authenticated streams)")
    args = p.parse_args(argv)
    if not args.backup:
        p.error("at least one --backup name=host:port is needed")
    try:
        anyio.run(run, args)
    except KeyboardInterrupt:
        return 130
    except (OSError, meshnet.MeshnetError) as e:
        print(f"kvdemo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
