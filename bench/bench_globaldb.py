"""Global DB: our grpclib+betterproto etcd client against a grpcio client, same 3-member etcd.

Workloads: puts/s and linearizable single-key ranges/s at concurrency 1 and 64, against a
three-member etcd 3.4 cluster on loopback (started here, data in a temp dir). The peer is the
official gRPC runtime (``grpc.aio``) with stubs generated at bench time by ``grpc_tools.protoc``
from the very same ``.proto`` files our client uses, so both sides send identical bytes and the
ratio isolates the client stack (grpclib + betterproto vs grpcio C core + protobuf).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from harness import Comparison, Trial

from meshnet import free_port
from mycelium.globaldb import EtcdClient

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "apps/mycelium/src/mycelium/globaldb/protos"
OPS = {1: 400, 64: 3000}  # operations per repetition, by concurrency
VALUE = b"v" * 128


def _start_cluster(stack: contextlib.ExitStack, root: Path, size: int = 3) -> list[str]:
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(etcd, os.X_OK):
        raise RuntimeError(f"etcd not found at {etcd}: install the Debian package etcd-server")
    ports = [(free_port(), free_port()) for _ in range(size)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    procs: list[subprocess.Popen[bytes]] = []

    def stop() -> None:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()

    stack.callback(stop)
    for i, (client, peer) in enumerate(ports):
        log = open(root / f"m{i}.log", "wb")  # noqa: SIM115 - handed to the process
        procs.append(
            subprocess.Popen(
                [etcd, "--name", f"m{i}", "--data-dir", str(root / f"m{i}"),
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        log.close()
    endpoints = [f"127.0.0.1:{c}" for c, _ in ports]
    deadline = time.monotonic() + 30
    for ep in endpoints:
        while True:
            try:
                with urllib.request.urlopen(f"http://{ep}/health", timeout=0.5) as r:
                    if json.loads(r.read()).get("health") == "true":
                        break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd member {ep} not healthy after 30 s")
            time.sleep(0.1)
    return endpoints


def _grpcio_stubs(stack: contextlib.ExitStack) -> tuple[Any, Any]:
    """Generate grpcio modules from our .proto files into a temp dir and import them."""
    out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gdb-grpcio-")))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}",
         f"--grpc_python_out={out}", str(PROTOS / "kv.proto"), str(PROTOS / "rpc.proto")],
        check=True, capture_output=True,
    )  # fmt: skip
    sys.path.insert(0, str(out))
    stack.callback(sys.path.remove, str(out))
    return importlib.import_module("rpc_pb2"), importlib.import_module("rpc_pb2_grpc")


async def _drive(concurrency: int, total: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Run ``total`` calls of ``op`` from ``concurrency`` workers; returns operations per second."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


def _ours(endpoint: str, kind: str, concurrency: int) -> Callable[[], float]:
    async def run() -> float:
        async with EtcdClient.connect(endpoint) as client:
            await client.put("/bench/ours/read", VALUE)
            if kind == "put":
                return await _drive(
                    concurrency, OPS[concurrency], lambda i: client.put(f"/bench/ours/{i}", VALUE)
                )
            return await _drive(concurrency, OPS[concurrency], lambda _i: client.get("/bench/ours/read"))

    return lambda: anyio.run(run)


def _peer(endpoint: str, kind: str, concurrency: int, pb2: Any, grpc_mod: Any) -> Callable[[], float]:
    import grpc

    async def run() -> float:
        async with grpc.aio.insecure_channel(endpoint) as channel:
            kv = grpc_mod.KVStub(channel)
            await kv.Put(pb2.PutRequest(key=b"/bench/peer/read", value=VALUE))
            if kind == "put":
                return await _drive(
                    concurrency,
                    OPS[concurrency],
                    lambda i: kv.Put(pb2.PutRequest(key=f"/bench/peer/{i}".encode(), value=VALUE)),
                )
            return await _drive(
                concurrency, OPS[concurrency], lambda _i: kv.Range(pb2.RangeRequest(key=b"/bench/peer/read"))
            )

    return lambda: asyncio.run(run())


def comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gdb-bench-")))
    endpoints = _start_cluster(stack, root)
    pb2, grpc_mod = _grpcio_stubs(stack)
    target = endpoints[0]  # both clients talk to the same member
    out = []
    for kind, unit in (("put", "puts/s"), ("range", "ranges/s")):
        for concurrency in (1, 64):
            out.append(
                Comparison(
                    name=f"globaldb {kind} concurrency {concurrency} (3-member etcd)",
                    unit=unit,
                    higher_is_better=True,
                    ours=Trial("mycelium.globaldb (grpclib+betterproto)", _ours(target, kind, concurrency)),
                    peer=Trial(
                        "grpcio aio client (same .proto)", _peer(target, kind, concurrency, pb2, grpc_mod)
                    ),
                    repetitions=3,
                    note=f"{OPS[concurrency]} ops per repetition, 128-byte values, linearizable reads",
                )
            )
    return out
