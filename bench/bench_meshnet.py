"""meshnet: multi-homed failover time and parallel-pull throughput, with real peer processes.

Every peer is a separate process (``python -m meshnet.testhosts._rpcpeer``) speaking meshnet's
mutually authenticated TLS transport on loopback; the client runs here.

* Failover: a client holds connections to 3 peers; a call is in flight on the peer it prefers
  (``--hold``: that peer never answers it) when that peer is killed. We measure from the kill to the
  completed call. Peer side: the same call with no failure (to the peer that takes over), so the
  ratio is the cost of failing over in units of one normal call; also against the published goal of
  1 s. SIGKILL is noticed through the kernel closing the socket; SIGSTOP (a frozen peer, no FIN) only
  through missed health probes, so its bound is the probe interval + timeout (0.5 s by default).
* Parallel pull: one object pulled as 1 MiB checksummed ranges from 3 peers vs the same code with
  1 peer (MB/s): uncapped (on this 2-core machine client and peers share the CPUs, so that ratio is
  bounded by TLS + sha256 CPU cost, not by any network), with every peer's uplink capped at 20 MB/s
  (what a WAN peer looks like: the case parallel pull is for), and 2 fast + 1 slow peer (every
  range delayed 200 ms) vs 1 fast peer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from harness import Comparison, Trial

from meshnet import (
    ChunkManifest,
    MeshCredentials,
    MultiHomeConfig,
    MultiHomedClient,
    NetworkIdentity,
    NodeIdentity,
    RpcConnection,
    RpcRangeSource,
    connect,
    mesh_connector,
    parallel_pull,
)
from meshnet.testhosts import DelayRelay

BLOB_BYTES = 32 * 1024 * 1024
CHUNK = 1024 * 1024
CAPPED_MBPS = 20.0  # per-peer upload cap for the "real network" case
RELAY_DELAY = 0.005  # the two fallback peers are 5 ms further away, so the client prefers s1
CONFIG = MultiHomeConfig()  # the defaults users get


class _World:
    """Peer processes and the files they need; everything goes when the ExitStack closes."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-meshnet-")))
        self.network = NetworkIdentity.generate("bench-meshnet")
        self.network_file = self.tmp / "network.json"
        self.network.save(self.network_file)
        self.blob = os.urandom(BLOB_BYTES)
        self.blob_file = self.tmp / "blob"
        self.blob_file.write_bytes(self.blob)
        self.manifest = ChunkManifest.build(self.blob, CHUNK)
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}
        stack.callback(self.close)

    def start(self, name: str, *extra: str) -> None:
        argv = [sys.executable, "-m", "meshnet.testhosts._rpcpeer", "--network", str(self.network_file)]
        proc = subprocess.Popen(
            [*argv, "--name", name, "--blob", str(self.blob_file), *extra],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if line[:1] != ["READY"]:
            raise RuntimeError(f"peer {name} did not start")
        self.procs[name], self.ports[name] = proc, int(line[1])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        if sig == signal.SIGSTOP:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        self.ports.pop(name, None)

    def credentials(self) -> MeshCredentials:
        return self.network.credentials_for(NodeIdentity.generate())

    def close(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(ProcessLookupError):
                self.kill(name)


def _failover_seconds(world: _World, sig: int) -> float:
    world.start("s1", "--hold")
    creds = world.credentials()
    result: list[float] = []

    async def main() -> None:
        async with (
            DelayRelay(("127.0.0.1", world.ports["s2"]), RELAY_DELAY) as r2,
            DelayRelay(("127.0.0.1", world.ports["s3"]), RELAY_DELAY) as r3,
        ):
            addresses = {"s1": ("127.0.0.1", world.ports["s1"]), "s2": r2.address, "s3": r3.address}
            async with MultiHomedClient(list(addresses), mesh_connector(creds, addresses), CONFIG) as client:
                await client.wait_healthy(3)
                with anyio.fail_after(10):
                    while client.best() != "s1":  # noqa: ASYNC110 (the selector has no event to wait on)
                        await anyio.sleep(0.05)
                killed_at: list[float] = []

                async def kill_soon() -> None:
                    await anyio.sleep(0.2)
                    killed_at.append(time.perf_counter())
                    os.killpg(world.procs["s1"].pid, sig)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(kill_soon)
                    reply = await client.call(b"hold:bench")
                result.append(time.perf_counter() - killed_at[0])
                if not reply.startswith((b"s2:", b"s3:")):
                    raise RuntimeError(f"call completed on the wrong peer: {reply!r}")

    anyio.run(main)
    world.kill("s1", sig)
    return result[0]


def _normal_call_seconds(world: _World) -> float:
    creds = world.credentials()
    result: list[float] = []

    async def main() -> None:
        async with DelayRelay(("127.0.0.1", world.ports["s2"]), RELAY_DELAY) as r2:
            addresses = {"s2": r2.address}
            async with MultiHomedClient(["s2"], mesh_connector(creds, addresses), CONFIG) as client:
                await client.wait_healthy(1)
                started = time.perf_counter()
                await client.call(b"hold:bench")
                result.append(time.perf_counter() - started)

    anyio.run(main)
    return result[0]


def _pull_mbps(world: _World, names: list[str]) -> float:
    creds = world.credentials()
    result: list[float] = []

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            sources = []
            for name in names:
                stream = await connect(creds, "127.0.0.1", world.ports[name])
                rpc = await stack.enter_async_context(RpcConnection.open(stream))
                sources.append(RpcRangeSource(name, rpc))
            started = time.perf_counter()
            pulled = await parallel_pull(world.manifest, sources)
            result.append(BLOB_BYTES / (time.perf_counter() - started) / 1e6)
            if pulled.data != world.blob:
                raise RuntimeError("pulled bytes differ from the object")

    anyio.run(main)
    return result[0]


def comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    world = _World(stack)
    for name in ("s2", "s3", "p1", "p2", "p3"):
        world.start(name)
    world.start("slow", "--range-delay", "0.2")
    for name in ("c1", "c2", "c3"):
        world.start(name, "--uplink-mbps", str(CAPPED_MBPS))
    return [
        Comparison(
            name="multihome failover after SIGKILL of the peer in use (kill -> call completed)",
            unit="s",
            higher_is_better=False,
            ours=Trial("failover to the next peer", lambda: _failover_seconds(world, signal.SIGKILL)),
            peer=Trial("the same call with no failure", lambda: _normal_call_seconds(world)),
            note="3 peer processes over meshnet TLS; fallback peers 5 ms away (user-space relay)",
        ),
        Comparison(
            name="multihome failover after SIGKILL vs the 1 s goal",
            unit="s",
            higher_is_better=False,
            ours=Trial("failover to the next peer", lambda: _failover_seconds(world, signal.SIGKILL)),
            reference=1.0,
            reference_source="Mycelium goal: failover < 1 s (docs/meshnet-testworlds.md)",
        ),
        Comparison(
            name="multihome failover after SIGSTOP (frozen peer, probes only) vs the 1 s goal",
            unit="s",
            higher_is_better=False,
            ours=Trial("failover on missed probe", lambda: _failover_seconds(world, signal.SIGSTOP)),
            reference=1.0,
            reference_source="Mycelium goal: failover < 1 s; bound probe_interval+probe_timeout = 0.5 s",
        ),
        Comparison(
            name="parallel pull of 32 MiB: 3 peers vs 1 peer",
            unit="MB/s",
            higher_is_better=True,
            ours=Trial("3 peers", lambda: _pull_mbps(world, ["p1", "p2", "p3"])),
            peer=Trial("1 peer (same code)", lambda: _pull_mbps(world, ["p1"])),
            note="1 MiB sha256-checked ranges over meshnet TLS; client and peers share 2 cores",
        ),
        Comparison(
            name=f"parallel pull of 32 MiB, each peer's uplink capped at {CAPPED_MBPS:g} MB/s: 3 peers vs 1",
            unit="MB/s",
            higher_is_better=True,
            ours=Trial("3 capped peers", lambda: _pull_mbps(world, ["c1", "c2", "c3"])),
            peer=Trial("1 capped peer (same code)", lambda: _pull_mbps(world, ["c1"])),
            note="the case parallel pull exists for: the peers' upload links, not the CPU, are the limit",
            repetitions=3,
        ),
        Comparison(
            name="parallel pull of 32 MiB: 2 fast + 1 slow peer vs 1 fast peer",
            unit="MB/s",
            higher_is_better=True,
            ours=Trial("2 fast + 1 slow (200 ms/range)", lambda: _pull_mbps(world, ["p1", "p2", "slow"])),
            peer=Trial("1 fast peer", lambda: _pull_mbps(world, ["p1"])),
            note="work stealing keeps the slow peer from holding back the tail",
        ),
    ]
