"""Shared fixtures of the mycelium app tests.

Global DB section: real etcd clusters (``/usr/bin/etcd``) started on free loopback ports with their
data in a temp dir, waited on until healthy, killed at teardown; the embedded SQLite store with an
injected clock; and the parametrized ``kv_store`` fixture that runs one contract suite against
both backends (SQLite, single-member etcd, three-member etcd).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from meshnet import free_port
from mycelium.globaldb import EtcdClient, KVStore, SQLiteStore

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
# Fast Raft timing so leader elections after a killed member take well under a second.
ETCD_TIMING = ["--heartbeat-interval", "50", "--election-timeout", "500"]


class EtcdMember:
    """One etcd process; ``kill()`` is SIGKILL (a crash), ``start()`` restarts on the same data."""

    def __init__(self, name: str, data_dir: Path, client_port: int, peer_port: int, extra: list[str]) -> None:
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.initial_cluster = ""

    @property
    def scheme(self) -> str:
        return "https" if "--cert-file" in self.extra else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self) -> None:
        args = [
            ETCD,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"tok-{self.data_dir.parent.name}",
            *ETCD_TIMING,
            *self.extra,
        ]  # fmt: skip
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def healthy(self, ssl_ctx: object = None) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=0.5, context=ssl_ctx) as r:  # noqa: S310
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


class EtcdCluster:
    """``size`` members on loopback; ``endpoints`` are their client URLs."""

    def __init__(self, root: Path, size: int, extra: list[str] | None = None, ssl_ctx: object = None) -> None:
        self.root = root
        self.ssl_ctx = ssl_ctx
        self.members = [
            EtcdMember(f"m{i}", root / f"m{i}.etcd", free_port(), free_port(), list(extra or []))
            for i in range(size)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = initial

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 30.0) -> None:
        for m in self.members:
            m.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0, members: list[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = list(members or self.members)
        while pending:
            pending = [m for m in pending if not m.healthy(self.ssl_ctx)]
            for m in pending:
                if m.proc is not None and m.proc.poll() is not None:
                    log = (self.root / f"{m.name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"etcd member {m.name} exited:\n{log}")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"etcd members {[m.name for m in pending]} not healthy after {timeout} s")
            if pending:
                time.sleep(0.05)

    def member_for(self, endpoint: str) -> EtcdMember:
        return next(m for m in self.members if m.endpoint == endpoint or m.endpoint.endswith(endpoint))

    def stop(self) -> None:
        for m in self.members:
            m.kill()

    def etcdctl(self, *args: str, endpoints: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        if not os.access(ETCDCTL, os.X_OK):
            pytest.skip(f"etcdctl not found at {ETCDCTL} (Debian package etcd-client provides it)")
        env = {**os.environ, "ETCDCTL_API": "3"}
        cmd = [ETCDCTL, "--endpoints", ",".join(endpoints or self.endpoints), *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=True)


@contextlib.contextmanager
def running_etcd(
    root: Path, size: int, extra: list[str] | None = None, ssl_ctx: object = None
) -> Iterator[EtcdCluster]:
    if not os.access(ETCD, os.X_OK):
        pytest.skip(f"etcd binary not found at {ETCD} (Debian package etcd-server provides it)")
    cluster = EtcdCluster(root, size, extra, ssl_ctx)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A single-member etcd shared by the tests of one module."""
    with running_etcd(tmp_path_factory.mktemp("etcd1"), 1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def etcd_cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A three-member etcd cluster shared by the tests of one module."""
    with running_etcd(tmp_path_factory.mktemp("etcd3"), 3) as cluster:
        yield cluster


@pytest.fixture
def etcd_factory(tmp_path: Path) -> Iterator[Callable[..., EtcdCluster]]:
    """Start extra clusters inside one test (e.g. with TLS flags); all are killed afterwards."""
    with contextlib.ExitStack() as stack:

        def make(size: int = 1, extra: list[str] | None = None, ssl_ctx: object = None) -> EtcdCluster:
            root = tmp_path / f"etcd-{uuid.uuid4().hex[:6]}"
            root.mkdir()
            return stack.enter_context(running_etcd(root, size, extra, ssl_ctx))

        yield make


class FakeClock:
    """The injected clock of the SQLite store: time moves only when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # grpclib runs on asyncio


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses, so tests can share one etcd cluster."""
    return f"/test/{uuid.uuid4().hex[:12]}/"


class StoreHandle:
    """What the contract suite needs besides the store: the backend name and a way to let time pass."""

    def __init__(
        self, name: str, advance: Callable[[float], Awaitable[None]], cluster: EtcdCluster | None
    ) -> None:
        self.name = name
        self.advance = advance
        self.cluster = cluster


BACKENDS = [
    "sqlite",
    pytest.param("etcd-1", marks=pytest.mark.integration),
    pytest.param("etcd-3", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
async def kv_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[KVStore, StoreHandle]]:
    """One :class:`KVStore` per backend, plus its :class:`StoreHandle`."""
    if request.param == "sqlite":
        clock = FakeClock()

        async with SQLiteStore(tmp_path / "gdb.sqlite", clock=clock, expiry_interval=None) as sqlite_store:

            async def advance_sqlite(seconds: float) -> None:
                clock.now += seconds
                await sqlite_store.expire_leases()

            yield sqlite_store, StoreHandle("sqlite", advance_sqlite, None)
        return
    cluster: EtcdCluster = request.getfixturevalue(
        "etcd_single" if request.param == "etcd-1" else "etcd_cluster3"
    )

    async def advance_etcd(seconds: float) -> None:
        await anyio.sleep(seconds)

    async with EtcdClient.connect(*cluster.endpoints) as client:
        yield client, StoreHandle(request.param, advance_etcd, cluster)
