"""Failover against a real three-member etcd cluster: killed members, resumed watches, dead endpoints."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from mycelium.globaldb import (
    Compare,
    EtcdClient,
    Event,
    GlobalDBError,
    Put,
    RequestTimeoutError,
    UnavailableError,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def create_once(client: EtcdClient, key: str, value: str) -> None:
    """Write ``key`` exactly once even if a leader dies mid-request.

    A write in flight when the leader is killed can time out with an unknown outcome (etcd drops
    proposals forwarded to a dead leader); retrying a create-if-absent txn is safe, a plain put
    would write a second revision.
    """
    for _ in range(10):
        try:
            await client.txn([Compare.version(key, "==", 0)], [Put.of(key, value)])
            return
        except (RequestTimeoutError, UnavailableError):
            continue
    raise GlobalDBError(f"could not write {key} after 10 attempts")


@pytest.fixture
def cluster(etcd_cluster3: Any) -> Iterator[Any]:
    """The module's cluster, with every member brought back (and healthy) after each test."""
    yield etcd_cluster3
    for m in etcd_cluster3.members:
        if m.proc is None:
            m.start()
    etcd_cluster3.wait_healthy()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_watch_resumes_on_another_member_without_losing_or_duplicating_events(
    cluster: Any, key_prefix: str
) -> None:
    resumes_before = metric("mycelium_globaldb_watch_resumes_total")
    total, kill_after = 40, 15
    received: list[Event] = []
    got_some = anyio.Event()
    async with (
        EtcdClient.connect(*cluster.endpoints) as watcher_client,
        watcher_client.watch(key_prefix, prefix=True) as watch,
    ):
        assert watch.endpoint is not None
        victim = cluster.member_for(str(watch.endpoint))
        survivors = [m.endpoint for m in cluster.members if m is not victim]

        async def consume() -> None:
            async for event in watch:
                received.append(event)
                if len(received) == kill_after:
                    got_some.set()
                if len(received) == total:
                    return

        with anyio.fail_after(60):
            async with (
                EtcdClient.connect(*survivors, request_timeout=2.0) as writer,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(consume)
                for i in range(kill_after):
                    await create_once(writer, f"{key_prefix}{i:03d}", str(i))
                await got_some.wait()
                victim.kill()  # SIGKILL the member the watch streams from
                for i in range(kill_after, total):
                    await create_once(writer, f"{key_prefix}{i:03d}", str(i))
            assert watch.reconnects >= 1
            assert watch.endpoint is not None
            assert str(watch.endpoint) != victim.endpoint
    assert metric("mycelium_globaldb_watch_resumes_total") > resumes_before  # operators see it
    keys = [e.kv.key for e in received]
    assert keys == [f"{key_prefix}{i:03d}".encode() for i in range(total)]  # none lost, none twice, in order
    revisions = [e.revision for e in received]
    assert revisions == sorted(set(revisions))


async def test_writes_fail_over_when_the_current_member_dies(cluster: Any, key_prefix: str) -> None:
    async with EtcdClient.connect(*cluster.endpoints, request_timeout=2.0) as client:
        await client.put(key_prefix + "before", "1")
        victim = cluster.member_for(str(client.endpoint))
        failovers_before = metric("mycelium_globaldb_endpoint_failovers_total", reason="connection")
        victim.kill()
        with anyio.fail_after(30):
            await create_once(client, key_prefix + "after", "2")  # refused connection: moves on
        assert str(client.endpoint) != victim.endpoint
        assert metric("mycelium_globaldb_endpoint_failovers_total", reason="connection") > failovers_before
        kv = await client.get(key_prefix + "after")
        assert kv is not None
        assert kv.value == b"2"


async def test_no_reachable_member_gives_an_unavailable_error_naming_the_endpoints() -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    endpoints = [f"127.0.0.1:{p}" for p in ports]
    client = EtcdClient.connect(*endpoints, request_timeout=1.0)
    with pytest.raises(UnavailableError) as info:
        await client.status()
    await client.aclose()
    message = str(info.value)
    assert "no etcd member answered" in message
    assert all(str(p) in message for p in ports)
