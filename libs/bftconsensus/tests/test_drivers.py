"""The anyio drivers over real meshnet TLS on loopback, in one process: several client cores share
one connection per replica, and each gets its own replies (those a replica produced together
arrive in one REPLIES frame)."""

from __future__ import annotations

import contextlib

import anyio
import pytest

import bftconsensus as b
from bftconsensus._wire import Kind
from meshnet import NetworkIdentity, NodeIdentity, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CORES = 6
OPS = 5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_many_clients_share_one_connection_per_replica_and_get_their_own_results() -> None:
    net = NetworkIdentity.generate("drivers")
    replicas = [NodeIdentity.generate() for _ in range(4)]
    gateway = NodeIdentity.generate()  # the client process's own mesh identity
    clients = [NodeIdentity.generate() for _ in range(CORES)]
    names = [r.node_id for r in replicas]
    keys = {i.node_id: i.public_key for i in [*replicas, *clients]}
    addresses = {r.node_id: ("127.0.0.1", free_port()) for r in replicas}
    config = b.ReplicaConfig(tuple(names))
    results: dict[str, list[bytes]] = {}
    async with contextlib.AsyncExitStack() as stack:
        services = []
        for r in replicas:
            replica = b.Replica(r, keys, config, b.KeyValueStore(), clients={c.node_id for c in clients})
            host, port = addresses[r.node_id]
            service = b.ReplicaService(replica, net.credentials_for(r), addresses, host=host, port=port)
            services.append(await stack.enter_async_context(service))
        cores = [b.Client(c, keys, names, retransmit=1.0) for c in clients]
        cc = b.ClusterClient(cores, net.credentials_for(gateway), addresses)
        kinds: list[int] = []  # of the frames the replicas sent this process
        on_reply = cc._on_reply

        def recording(node: str, frame: bytes) -> None:
            kinds.append(b.decode_frame(frame).kind)
            on_reply(node, frame)

        cc._on_reply = recording  # type: ignore[method-assign]
        await stack.enter_async_context(cc)
        with anyio.fail_after(20):
            await cc.wait_connected()

        async def worker(w: int, name: str) -> None:
            out = results.setdefault(name, [])
            for i in range(OPS):
                out.append(await cc.call(b"put k%d-%d v%d-%d" % (w, i, w, i), client=name))
            out.append(await cc.call(b"get k%d-%d" % (w, OPS - 1), client=name))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as workers:
                for w, core in enumerate(cores):
                    workers.start_soon(worker, w, core.signer.node_id)
        with pytest.raises(b.BftConsensusError, match="several clients"):
            await cc.call(b"get x")
        with pytest.raises(b.BftConsensusError, match="no client"):
            await cc.call(b"get x", client="nobody")
        # the replies a replica produced together for this process's cores came in one frame
        assert int(Kind.REPLIES) in kinds
        assert set(kinds) <= {int(Kind.REPLY), int(Kind.REPLIES)}
        for service in services:  # one client connection each, carrying every core
            assert set(service._routes) == {c.node_id for c in clients}
            assert len({id(q) for q in service._routes.values()}) == 1
    for w, core in enumerate(cores):
        out = results[core.signer.node_id]
        assert out == [b"ok"] * OPS + [b"v%d-%d" % (w, OPS - 1)]


class _FaultyTimers(b.Replica):
    """A replica core with a bug in its timer handling (what such a bug must look like)."""

    def timer(self, tag: str) -> list[b.Action]:
        raise RuntimeError(f"bug in timer {tag!r}")


async def test_a_crashing_core_stops_the_service_with_its_own_error() -> None:
    net = NetworkIdentity.generate("drivers")
    me = NodeIdentity.generate()
    config = b.ReplicaConfig((me.node_id,))
    replica = _FaultyTimers(me, {me.node_id: me.public_key}, config, b.KeyValueStore())
    addresses = {me.node_id: ("127.0.0.1", free_port())}
    with pytest.raises(BaseExceptionGroup) as caught:  # noqa: PT012 - the error comes from the body's wait
        async with b.ReplicaService(
            replica, net.credentials_for(me), addresses, port=addresses[me.node_id][1]
        ) as s:
            s._timers.set("view-change", 0.0)
            with anyio.fail_after(5):
                await anyio.sleep_forever()
    assert caught.group_contains(RuntimeError, match="bug in timer 'view-change'")


def test_wire_limits_above_what_meshnet_carries_are_refused_up_front() -> None:
    net = NetworkIdentity.generate("drivers")
    me, client = NodeIdentity.generate(), NodeIdentity.generate()
    keys = {me.node_id: me.public_key, client.node_id: client.public_key}
    huge = b.WireLimits(max_frame_bytes=32 * 1024 * 1024)
    replica = b.Replica(me, keys, b.ReplicaConfig((me.node_id,)), b.KeyValueStore(), limits=huge)
    with pytest.raises(b.ConfigError, match="above the 16777216 bytes a meshnet stream carries"):
        b.ReplicaService(replica, net.credentials_for(me), {me.node_id: ("127.0.0.1", free_port())})
    core = b.Client(client, keys, [me.node_id], limits=huge)
    with pytest.raises(b.ConfigError, match=f"client {client.node_id!r}"):
        b.ClusterClient(core, net.credentials_for(client), {me.node_id: ("127.0.0.1", free_port())})
