"""bftconsensus benchmarks: PBFT replicas as processes on loopback (meshnet TLS, batching) against a
3-member etcd cluster (Raft) started on the same machine in the same run.

* put throughput, n=4 (f=1) and n=7 (f=2), CLIENTS concurrent clients, vs etcd with the same number
  of concurrent gRPC puts;
* put latency with one client, n=4, vs one sequential etcd put stream.

PBFT clients sign every request (Ed25519) and a MAC tag per replica; replicas take a request from
its client's link and backups vouch for the primary's batch by its tags; every pre-prepare,
prepare and checkpoint is signed and checked. etcd clients do none of this, so the comparison
includes the price of Byzantine fault tolerance, not just of ordering. Our load generator is Python (the library's ClusterClient); etcd's is grpcio (C core).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from harness import Comparison, Trial

import bftconsensus as b
from bftconsensus._serve import backend_options
from meshnet import NetworkIdentity, NodeIdentity, free_port

CLIENTS = 32
DURATION = 3.0


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by the given processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return
        if not line and proc.poll() is not None:
            raise RuntimeError(f"process exited before {prefix!r}")
    raise RuntimeError(f"no {prefix!r} within {timeout} s")


class PbftCluster:
    """n replica processes plus the identities the load generator needs."""

    def __init__(
        self, stack: contextlib.ExitStack, n: int, tmp: Path, config: dict[str, object] | None = None
    ) -> None:
        tag = f"{n}" + "".join(f"-{k}" for k in sorted(config or {}))  # file names per cluster
        self.net = NetworkIdentity.generate(f"bench{n}")
        self.net.save(tmp / f"net{tag}.json")
        replicas = [NodeIdentity.generate() for _ in range(n)]
        self.clients = [NodeIdentity.generate() for _ in range(CLIENTS + 1)]
        self.gateway = NodeIdentity.generate()  # the load generator's own node identity
        doc = {
            "replicas": {
                r.node_id: {"host": "127.0.0.1", "port": free_port(), "public_key": r.public_key.hex()}
                for r in replicas
            },
            "clients": {c.node_id: c.public_key.hex() for c in self.clients},
            "config": dict(config or {}),
        }
        (tmp / f"cluster{tag}.json").write_text(json.dumps(doc))
        self.pids: list[int] = []
        self.names = list(doc["replicas"])
        self.addresses = {k: ("127.0.0.1", v["port"]) for k, v in doc["replicas"].items()}
        self.keys = {k: bytes.fromhex(v["public_key"]) for k, v in doc["replicas"].items()}
        self.keys.update({c.node_id: c.public_key for c in self.clients})
        for r in replicas:
            key = tmp / f"{r.node_id}.pem"
            r.save(key)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bftconsensus",
                    "replica",
                    "--cluster",
                    str(tmp / f"cluster{tag}.json"),
                    "--key",
                    str(key),
                    "--network",
                    str(tmp / f"net{tag}.json"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            stack.callback(_stop, proc)
            _wait_line(proc, "ready")
            self.pids.append(proc.pid)
        self.round = 0

    def cpu_per_op_us(self) -> float:
        """CPU (replicas + load generator) per operation, 32 clients, in microseconds."""
        self.round += 1
        return anyio.run(self._load, self.clients[:CLIENTS], DURATION, backend_options=backend_options())[2]

    def throughput(self, clients: int) -> float:
        self.round += 1
        return anyio.run(self._load, self.clients[:clients], DURATION, backend_options=backend_options())[0]

    def latency_ms(self) -> float:
        self.round += 1
        return anyio.run(self._load, self.clients[-1:], DURATION, backend_options=backend_options())[1]

    async def _load(self, idents: list[NodeIdentity], duration: float) -> tuple[float, float, float]:
        lat: list[float] = []
        count = 0
        cores = [
            b.Client(
                b.Ed25519Signer.from_identity(ident),
                self.keys,
                self.names,
                retransmit=2.0,
                first_timestamp=self.round * 1_000_000,
            )
            for ident in idents
        ]
        # One process, one connection per replica shared by every client core (as etcd's
        # grpcio channels multiplex its concurrent puts); each core still signs its own requests.
        async with b.ClusterClient(cores, self.net.credentials_for(self.gateway), self.addresses) as cc:
            with anyio.fail_after(60):
                await cc.wait_connected()
            end = time.perf_counter() + duration

            async def worker(name: str, w: int) -> None:
                nonlocal count
                i = 0
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    await cc.call(b"put k%d-%d v%d" % (w, i, i), client=name)
                    lat.append(time.perf_counter() - t0)
                    count += 1
                    i += 1

            start = time.perf_counter()
            cpu0 = _cpu_seconds(self.pids) + time.process_time()
            # one guard for the run (a cancel scope per call costs ~9 µs, ~1% of an operation)
            with anyio.fail_after(duration + 30):
                async with anyio.create_task_group() as tg:
                    for w, core in enumerate(cores):
                        tg.start_soon(worker, core.signer.node_id, w)
            elapsed = time.perf_counter() - start
            cpu = _cpu_seconds(self.pids) + time.process_time() - cpu0
        return count / elapsed, 1000 * statistics.median(lat), 1e6 * cpu / max(count, 1)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)


class EtcdCluster:
    """``members`` /usr/bin/etcd members (3 by default) on loopback, driven over gRPC (KV.Put) with
    grpcio."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path, members: int = 3) -> None:
        peers = [free_port() for _ in range(members)]
        self.client_ports = [free_port() for _ in range(members)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
        self.pids: list[int] = []
        for i in range(members):
            proc = subprocess.Popen(
                [
                    "/usr/bin/etcd",
                    "--name",
                    f"m{i}",
                    "--data-dir",
                    str(tmp / f"etcd{members}-{i}"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{self.client_ports[i]}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{self.client_ports[i]}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{peers[i]}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{peers[i]}",
                    "--initial-cluster",
                    initial,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    f"bftbench{members}",
                    "--log-level",
                    "error",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stack.callback(_stop, proc)  # type: ignore[arg-type]
            self.pids.append(proc.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                anyio.run(self._run, 1, 0.01)
                return
            except Exception:  # not up yet
                time.sleep(0.2)
        raise RuntimeError("etcd cluster did not come up within 30 s")

    def throughput(self, clients: int) -> float:
        return anyio.run(self._run, clients, DURATION)[0]

    def cpu_per_op_us(self) -> float:
        """CPU (etcd members + grpcio load generator) per put, 32 clients, in microseconds."""
        return anyio.run(self._run, CLIENTS, DURATION)[2]

    def latency_ms(self) -> float:
        return anyio.run(self._run, 1, DURATION)[1]

    async def _run(self, clients: int, duration: float) -> tuple[float, float, float]:
        import grpc  # grpcio: a dependency of the bench only

        def put_request(key: bytes, value: bytes) -> bytes:
            return b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value

        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in self.client_ports]
        lat: list[float] = []
        count = 0
        try:
            calls = [
                ch.unary_unary(
                    "/etcdserverpb.KV/Put", request_serializer=lambda x: x, response_deserializer=lambda x: x
                )
                for ch in channels
            ]
            end = time.perf_counter() + duration

            async def worker(w: int) -> None:
                nonlocal count
                call = calls[w % len(calls)]
                i = 0
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    await call(put_request(b"k%d-%d" % (w, i), b"v%d" % i), timeout=10)
                    lat.append(time.perf_counter() - t0)
                    count += 1
                    i += 1

            start = time.perf_counter()
            cpu0 = _cpu_seconds(self.pids) + time.process_time()
            async with anyio.create_task_group() as tg:
                for w in range(clients):
                    tg.start_soon(worker, w)
            elapsed = time.perf_counter() - start
            cpu = _cpu_seconds(self.pids) + time.process_time() - cpu0
        finally:
            for ch in channels:
                await ch.close()
        return count / elapsed, 1000 * statistics.median(lat), 1e6 * cpu / max(count, 1)


def comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    if shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists():
        raise RuntimeError("/usr/bin/etcd is not installed (Debian package etcd-server)")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bftbench-")))
    etcd = EtcdCluster(stack, tmp)
    n4 = PbftCluster(stack, 4, tmp)
    n7 = PbftCluster(stack, 7, tmp)
    n4_checked = PbftCluster(stack, 4, tmp, {"check_all_requests": True})

    @functools.cache  # started for the last comparison only: idle members still beat
    def etcd5() -> EtcdCluster:
        return EtcdCluster(stack, tmp, members=5)

    peer_tp = Trial(f"etcd 3 members, {CLIENTS} concurrent puts", lambda: etcd.throughput(CLIENTS))
    n7_tp = Trial("bftconsensus n=7", lambda: n7.throughput(CLIENTS))
    note = (
        "ours: Ed25519-signed requests, pre-prepares and prepares, MAC-tagged requests taken from "
        "the client's link; f+1 matching replies; batching; loopback meshnet TLS; load generator and "
        "replicas on uvloop when installed"
    )

    def puts(name: str, ours: Trial, peer: Trial = peer_tp, why: str = note) -> Comparison:
        return Comparison(
            name=name, unit="ops/s", higher_is_better=True, ours=ours, peer=peer, repetitions=3, note=why
        )

    return [
        puts(
            f"PBFT n=4 (f=1) put throughput, {CLIENTS} clients",
            Trial("bftconsensus n=4", lambda: n4.throughput(CLIENTS)),
        ),
        puts(
            f"PBFT n=4 put throughput, {CLIENTS} clients, check_all_requests=True",
            Trial("bftconsensus n=4, every signature checked", lambda: n4_checked.throughput(CLIENTS)),
            why="Aardvark's rule: the primary checks every request's signature before proposing it, "
            "so no client that forges MAC tags can stall a slot (see docs/bftconsensus.md)",
        ),
        puts(f"PBFT n=7 (f=2) put throughput, {CLIENTS} clients", n7_tp),
        Comparison(
            name=f"PBFT n=4 CPU per put, {CLIENTS} clients (every process)",
            unit="us CPU/op",
            higher_is_better=False,
            ours=Trial("bftconsensus n=4 + load generator", n4.cpu_per_op_us),
            peer=Trial("etcd 3 members + grpcio load generator", etcd.cpu_per_op_us),
            repetitions=3,
            note="CPU time of the servers and the load generator over the timed window, per operation: "
            "steadier than ops/s on a shared machine",
        ),
        Comparison(
            name="PBFT n=4 put latency, 1 client (median)",
            unit="ms",
            higher_is_better=False,
            ours=Trial("bftconsensus n=4", n4.latency_ms),
            peer=Trial("etcd 3 members, 1 client", etcd.latency_ms),
            repetitions=3,
            note=note,
        ),
        puts(
            f"PBFT n=7 (f=2) put throughput, {CLIENTS} clients, vs 5 etcd members",
            n7_tp,
            Trial(f"etcd 5 members, {CLIENTS} concurrent puts", lambda: etcd5().throughput(CLIENTS)),
            why="context, not the target: 5 Raft members tolerate 2 crashed ones, as 7 PBFT replicas "
            "tolerate 2 Byzantine ones",
        ),
    ]
