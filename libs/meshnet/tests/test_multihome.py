"""Multi-homing: selection by health and latency, RPC multiplexing, failover with real peer processes."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from meshnet import DecodeError, FramedStream, MeshCredentials, MeshServer, NetworkIdentity, NodeIdentity
from meshnet._multihome import (
    CallOutcomeUnknownError,
    MultiHomeConfig,
    MultiHomedClient,
    MultiHomeError,
    NoHealthyPeerError,
    PeerSelector,
    RemoteCallError,
    RpcConnection,
    decode_frame,
    encode_frame,
    mesh_connector,
    serve_calls,
)
from meshnet.sim import LinkProfile, NodeContext, Simulation, run_seeds, seed_count
from meshnet.testhosts import DelayRelay, HostNetwork, netns_unavailable_reason


# --------------------------------------------------------------------------- helpers (fixtures)
class MemoryChannel:
    """One end of an in-memory frame pipe (for unit tests of the RPC layer only)."""

    def __init__(
        self,
        send: anyio.abc.ObjectSendStream[bytes],
        receive: anyio.abc.ObjectReceiveStream[bytes],
    ) -> None:
        self._send, self._receive = send, receive

    async def send(self, data: bytes) -> None:
        await self._send.send(data)

    async def receive(self) -> bytes:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def channel_pair() -> tuple[MemoryChannel, MemoryChannel]:
    a_send, b_receive = anyio.create_memory_object_stream[bytes](100)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](100)
    return MemoryChannel(a_send, a_receive), MemoryChannel(b_send, b_receive)


class Peers:
    """Real peer processes (meshnet._rpcpeer) on loopback, killed at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.network = NetworkIdentity.generate("multihome-test")
        self.network_file = tmp / "network.json"
        self.network.save(self.network_file)
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, *extra: str) -> None:
        argv = [sys.executable, "-m", "meshnet.testhosts._rpcpeer", "--network", str(self.network_file)]
        self.procs[name] = subprocess.Popen(
            [*argv, "--name", name, *extra], stdout=subprocess.PIPE, text=True, start_new_session=True
        )

    def wait_ready(self) -> None:
        for name, proc in self.procs.items():
            if name in self.ports:
                continue
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            assert line[:1] == ["READY"], f"peer {name} did not start: {line}"
            self.ports[name] = int(line[1])

    def credentials(self) -> MeshCredentials:
        return self.network.credentials_for(NodeIdentity.generate())

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        os.killpg(self.procs[name].pid, sig)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    world = Peers(tmp_path)
    try:
        yield world
    finally:
        world.close()


FAST = MultiHomeConfig(probe_interval=0.05, probe_timeout=0.3, attempt_timeout=5.0, call_timeout=15.0)


# --------------------------------------------------------------------------- selector (core)
def test_the_selector_prefers_the_lowest_smoothed_latency() -> None:
    sel = PeerSelector(["s1", "s2", "s3"])
    for p in sel.peers:
        sel.connected(p)
    assert sel.ranking() == ["s1", "s2", "s3"]  # nothing measured: configured order
    sel.observe_latency("s1", 0.030)
    sel.observe_latency("s2", 0.010)
    assert sel.ranking() == ["s2", "s1", "s3"]  # unmeasured last
    for _ in range(10):
        sel.observe_latency("s2", 0.100)
    assert sel.best() == "s1"


def test_a_failed_peer_leaves_the_ranking_until_it_answers_again() -> None:
    sel = PeerSelector(["s1", "s2"])
    sel.connected("s1")
    sel.connected("s2")
    sel.observe_latency("s1", 0.001)
    sel.failed("s1")
    assert sel.ranking() == ["s2"]
    sel.observe_latency("s1", 0.001)
    assert sel.ranking() == ["s1", "s2"]
    sel.disconnected("s2")
    assert sel.ranking() == ["s1"]
    assert [s.healthy for s in sel.status()] == [True, False]


def test_the_selector_refuses_bad_input() -> None:
    with pytest.raises(MultiHomeError, match="distinct"):
        PeerSelector(["a", "a"])
    sel = PeerSelector(["a"])
    with pytest.raises(MultiHomeError, match="unknown peer 'b'"):
        sel.failed("b")
    with pytest.raises(MultiHomeError, match="latency sample"):
        sel.observe_latency("a", -1.0)
    with pytest.raises(MultiHomeError, match=r"MultiHomeConfig\.probe_interval"):
        MultiHomeConfig(probe_interval=0)


@given(st.binary(max_size=64))
def test_decoding_any_frame_gives_a_frame_or_a_decode_error(frame: bytes) -> None:
    try:
        kind, call_id, body = decode_frame(frame)
    except DecodeError:
        return
    assert encode_frame(kind, call_id, body) == frame


# --------------------------------------------------------------------------- RPC layer
def test_concurrent_calls_are_matched_to_their_replies() -> None:
    async def handler(request: bytes) -> bytes:
        await anyio.sleep(0.05 * (3 - int(request)))  # later calls answer first
        return b"re:" + request

    async def main() -> None:
        client_end, server_end = channel_pair()
        results: dict[bytes, bytes] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_calls, server_end, handler)
            async with RpcConnection.open(client_end) as rpc:

                async def one(req: bytes) -> None:
                    results[req] = await rpc.call(req)

                async with anyio.create_task_group() as calls:
                    for req in (b"0", b"1", b"2"):
                        calls.start_soon(one, req)
                assert await rpc.ping() >= 0
            tg.cancel_scope.cancel()
        assert results == {b"0": b"re:0", b"1": b"re:1", b"2": b"re:2"}

    anyio.run(main)


def test_a_handler_error_comes_back_as_a_remote_call_error() -> None:
    async def handler(request: bytes) -> bytes:
        raise ValueError("no such key")

    async def main() -> None:
        client_end, server_end = channel_pair()
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_calls, server_end, handler)
            async with RpcConnection.open(client_end) as rpc:
                with pytest.raises(RemoteCallError, match="ValueError: no such key"):
                    await rpc.call(b"x")
            tg.cancel_scope.cancel()

    anyio.run(main)


def test_a_broken_connection_fails_waiting_calls_at_once() -> None:
    async def handler(request: bytes) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def main() -> None:
        client_end, server_end = channel_pair()
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_calls, server_end, handler)
            async with RpcConnection.open(client_end) as rpc:

                async def cut() -> None:
                    await anyio.sleep(0.1)
                    await server_end.aclose()

                tg.start_soon(cut)
                with anyio.fail_after(5), pytest.raises(MultiHomeError, match="connection lost"):
                    await rpc.call(b"never answered")
                assert rpc.closed
            tg.cancel_scope.cancel()

    anyio.run(main)


# --------------------------------------------------------------------------- client over meshnet
def test_calls_go_to_the_lowest_latency_peer() -> None:
    net = NetworkIdentity.generate("mh-latency")

    def server_creds() -> MeshCredentials:
        return net.credentials_for(NodeIdentity.generate())

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            addresses: dict[str, tuple[str, int]] = {}
            for name, delay in (("far1", 0.04), ("near", 0.0), ("far2", 0.04)):
                label = name.encode()

                async def on_stream(stream: FramedStream, label: bytes = label) -> None:
                    async def handler(request: bytes) -> bytes:
                        return label

                    await serve_calls(stream, handler)

                server = await stack.enter_async_context(MeshServer(server_creds(), on_stream))
                port = server.port
                if delay:
                    relay = await stack.enter_async_context(DelayRelay(("127.0.0.1", port), delay))
                    port = relay.port
                addresses[name] = ("127.0.0.1", port)
            connector = mesh_connector(net.credentials_for(NodeIdentity.generate()), addresses)
            async with MultiHomedClient(list(addresses), connector, FAST) as client:
                await client.wait_healthy(3)
                await anyio.sleep(0.3)  # a few probes each
                assert client.best() == "near"
                assert await client.call(b"who") == b"near"

    anyio.run(main)


@pytest.mark.integration
def test_killing_the_peer_in_use_mid_call_completes_the_call_on_another(peers: Peers) -> None:
    peers.start("s1", "--hold")
    peers.start("s2")
    peers.start("s3")
    peers.wait_ready()

    async def main() -> None:
        # s2 and s3 sit behind 20 ms relays, so the client picks s1 and the held call lands there.
        async with (
            DelayRelay(("127.0.0.1", peers.ports["s2"]), 0.02) as r2,
            DelayRelay(("127.0.0.1", peers.ports["s3"]), 0.02) as r3,
        ):
            addresses = {"s1": ("127.0.0.1", peers.ports["s1"]), "s2": r2.address, "s3": r3.address}
            connector = mesh_connector(peers.credentials(), addresses)
            registry = CollectorRegistry()
            async with MultiHomedClient(["s1", "s2", "s3"], connector, FAST, registry=registry) as client:
                await client.wait_healthy(3)
                await anyio.sleep(0.3)
                assert client.best() == "s1"

                async def kill_soon() -> None:
                    await anyio.sleep(0.3)
                    peers.kill("s1")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(kill_soon)
                    with anyio.fail_after(10):
                        reply = await client.call(b"hold:42")
                assert reply in (b"s2:hold:42", b"s3:hold:42")
                assert client.failovers >= 1
                assert "s1" not in client.selector.ranking()
                assert (
                    registry.get_sample_value("mycelium_meshnet_multihome_failovers_total")
                    == client.failovers
                )
                assert registry.get_sample_value("mycelium_meshnet_multihome_failover_seconds_count") == 1

    anyio.run(main)


@pytest.mark.integration
def test_a_non_idempotent_call_on_a_killed_peer_reports_an_unknown_outcome(peers: Peers) -> None:
    peers.start("s1", "--hold")
    peers.start("s2")
    peers.wait_ready()

    async def main() -> None:
        async with DelayRelay(("127.0.0.1", peers.ports["s2"]), 0.05) as r2:
            connector = mesh_connector(
                peers.credentials(), {"s1": ("127.0.0.1", peers.ports["s1"]), "s2": r2.address}
            )
            async with MultiHomedClient(["s1", "s2"], connector, FAST) as client:
                await client.wait_healthy(2)
                await anyio.sleep(0.3)
                assert client.best() == "s1"

                async def kill_soon() -> None:
                    await anyio.sleep(0.2)
                    peers.kill("s1")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(kill_soon)
                    with pytest.raises(CallOutcomeUnknownError, match="s1"):
                        await client.call(b"hold:transfer", idempotent=False)
                # The next call, idempotent or not, goes to the survivor.
                assert await client.call(b"after", idempotent=False) == b"s2:after"

    anyio.run(main)


@pytest.mark.integration
def test_a_silent_peer_is_detected_by_probes_and_the_call_moves_on(peers: Peers) -> None:
    peers.start("s1", "--hold")
    peers.start("s2")
    peers.wait_ready()

    async def main() -> None:
        async with DelayRelay(("127.0.0.1", peers.ports["s2"]), 0.05) as r2:
            connector = mesh_connector(
                peers.credentials(), {"s1": ("127.0.0.1", peers.ports["s1"]), "s2": r2.address}
            )
            async with MultiHomedClient(["s1", "s2"], connector, FAST) as client:
                await client.wait_healthy(2)
                await anyio.sleep(0.3)
                assert client.best() == "s1"

                async def freeze_soon() -> None:
                    await anyio.sleep(0.2)
                    peers.kill("s1", signal.SIGSTOP)  # no FIN, no RST: only the probes notice

                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(freeze_soon)
                        with anyio.fail_after(10):
                            assert await client.call(b"hold:frozen") == b"s2:hold:frozen"
                finally:
                    peers.kill("s1", signal.SIGCONT)

    anyio.run(main)


@pytest.mark.integration
def test_a_restarted_peer_is_reconnected_and_used_again(peers: Peers) -> None:
    peers.start("s1")
    peers.wait_ready()

    async def main() -> None:
        connector = mesh_connector(peers.credentials(), {"s1": ("127.0.0.1", peers.ports["s1"])})
        async with MultiHomedClient(["s1"], connector, FAST) as client:
            await client.wait_healthy(1)
            assert await client.call(b"one") == b"s1:one"
            peers.kill("s1")
            with pytest.raises(NoHealthyPeerError, match=r"within 0\.5 s"):
                await client.call(b"two", budget=0.5)
            port = peers.ports.pop("s1")
            peers.procs["s1"].wait(timeout=10)
            peers.start("s1", "--port", str(port))
            peers.wait_ready()
            with anyio.fail_after(10):
                assert await client.call(b"three") == b"s1:three"

    anyio.run(main)


# --------------------------------------------------------------------------- the selector core in the simulator
class CallServer:
    def start(self, ctx: NodeContext) -> None:
        pass

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        kind, _, rest = payload.partition(b":")
        ctx.send(src, (b"pong:" if kind == b"ping" else b"reply:") + rest + b":" + ctx.node_id.encode())

    def timer(self, ctx: NodeContext, tag: str) -> None:
        pass


class SelectingClient:
    """Drives PeerSelector like MultiHomedClient does: probes every 50 ms, calls go to the best peer,
    a call not answered within 150 ms moves to the next peer (idempotent calls)."""

    PEERS = ("s1", "s2", "s3")

    def __init__(self, calls: int) -> None:
        self.sel = PeerSelector(self.PEERS)
        for p in self.PEERS:
            self.sel.connected(p)
        self.calls = calls
        self.issued = 0
        self.done: dict[int, str] = {}
        self.current: dict[int, str] = {}  # call -> peer it is waiting on
        self.probe_sent: dict[tuple[str, int], float] = {}
        self.probe_seq = 0
        self.retries = 0

    def start(self, ctx: NodeContext) -> None:
        ctx.set_timer(0.0, "probe")
        ctx.set_timer(0.2, "issue")

    def send_call(self, ctx: NodeContext, call: int) -> None:
        exclude = frozenset([self.current[call]]) if call in self.current else frozenset()
        ranked = self.sel.ranking(exclude) or self.sel.ranking() or list(self.PEERS)
        peer = ranked[0]
        self.current[call] = peer
        ctx.send(peer, b"call:%d" % call)
        ctx.set_timer(0.150, f"attempt:{call}")

    def receive(self, ctx: NodeContext, src: str, payload: bytes) -> None:
        kind, num, _server = payload.split(b":")
        if kind == b"pong":
            sent = self.probe_sent.pop((src, int(num)), None)
            if sent is not None:
                self.sel.observe_latency(src, ctx.now() - sent)
                ctx.cancel_timer(f"probe-timeout:{src}:{int(num)}")
        elif int(num) not in self.done:
            self.done[int(num)] = src
            self.current.pop(int(num), None)
            ctx.cancel_timer(f"attempt:{int(num)}")

    def timer(self, ctx: NodeContext, tag: str) -> None:
        kind, *rest = tag.split(":")
        if kind == "probe":
            self.probe_seq += 1
            for p in self.PEERS:
                self.probe_sent[(p, self.probe_seq)] = ctx.now()
                ctx.send(p, b"ping:%d" % self.probe_seq)
                ctx.set_timer(0.1, f"probe-timeout:{p}:{self.probe_seq}")
            ctx.set_timer(0.05, "probe")
        elif kind == "probe-timeout":
            if self.probe_sent.pop((rest[0], int(rest[1])), None) is not None:
                self.sel.failed(rest[0])
        elif kind == "issue":
            if self.issued < self.calls:
                self.send_call(ctx, self.issued)
                self.issued += 1
                ctx.set_timer(0.05, "issue")
        elif kind == "attempt" and int(rest[0]) not in self.done:
            self.retries += 1
            self.sel.failed(self.current[int(rest[0])])
            self.send_call(ctx, int(rest[0]))


def selector_scenario(seed: int) -> None:
    """Three servers at different distances; the fastest crashes, another is partitioned for a while:
    every call still completes, and with all healthy the fastest server takes the calls."""
    sim = Simulation(seed, LinkProfile(delay=(0.001, 0.003), fifo=True))
    sim.add_node("client", lambda: SelectingClient(calls=40))
    for name in SelectingClient.PEERS:
        sim.add_node(name, CallServer)
    sim.set_link("client", "s2", LinkProfile(delay=(0.010, 0.020), fifo=True))
    sim.set_link("client", "s3", LinkProfile(delay=(0.020, 0.030), fifo=True))
    rng = random.Random(seed)
    sim.after(rng.uniform(0.5, 1.0), lambda: sim.crash("s1", restart_after=rng.uniform(0.1, 1.0)))
    sim.after(rng.uniform(0.5, 1.5), lambda: sim.partition(["client"], ["s2"]))
    sim.after(2.0, sim.heal)
    client = sim.node("client", SelectingClient)
    sim.run_until(lambda: len(client.done) == 40, timeout=60.0)
    assert set(client.done) == set(range(40))
    # A failed peer leaves the ranking within one probe timeout, so only the few calls sent in
    # that window time out (without the selector, every call during an outage would).
    assert client.retries <= 10, client.retries
    sim.run_for(0.5)  # probes settle after the faults
    assert client.sel.best() == "s1"


@pytest.mark.sim
def test_the_selector_routes_around_crashes_and_partitions_in_the_simulator() -> None:
    assert run_seeds(selector_scenario, seeds=range(seed_count(default=100))) >= 1


# --------------------------------------------------------------------------- over test hosts
@pytest.mark.integration
def test_a_client_fails_over_when_a_real_partition_cuts_its_peer_host(tmp_path: Path) -> None:
    """Client in h0, peers in h1 (preferred) and h2; nftables cuts h0 from h1 during a call."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    network = NetworkIdentity.generate("multihome-netns")
    network_file = tmp_path / "network.json"
    network.save(network_file)
    with HostNetwork(3) as net:
        h0, h1, h2 = net.hosts
        for host, extra in ((h1, ["--hold"]), (h2, [])):
            argv = [sys.executable, "-m", "meshnet.testhosts._rpcpeer", "--network", str(network_file)]
            host.spawn([*argv, "--name", host.name, "--host", "0.0.0.0", "--port", "7000", *extra])
        for host in (h1, h2):
            proc = host.processes[0]
            deadline = time.monotonic() + 30
            while "READY" not in proc.output():
                assert proc.running, proc.output()
                assert time.monotonic() < deadline, "peer did not start"
                time.sleep(0.05)
        creds = network.credentials_for(NodeIdentity.generate())

        async def main() -> bytes:
            # h2 sits behind a 20 ms relay in h0, so the client prefers h1 and the call lands there.
            async with DelayRelay((h2.address, 7000), 0.02, netns=h0.netns) as relay:
                addresses = {"h1": (h1.address, 7000), "h2": relay.address}
                async with MultiHomedClient(["h1", "h2"], mesh_connector(creds, addresses), FAST) as client:
                    await client.wait_healthy(2)
                    await anyio.sleep(0.3)
                    assert client.best() == "h1"

                    async def cut_soon() -> None:
                        await anyio.sleep(0.2)
                        await anyio.to_thread.run_sync(net.partition, [h0], [h1])

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(cut_soon)
                        with anyio.fail_after(10):
                            reply = await client.call(b"hold:cut")
                    return reply

        assert h0.run_here(lambda: anyio.run(main)) == b"h2:hold:cut"


@pytest.mark.integration
def test_many_concurrent_calls_all_complete_across_a_kill(peers: Peers) -> None:
    peers.start("s1", "--hold")
    peers.start("s2")
    peers.start("s3")
    peers.wait_ready()

    async def main() -> None:
        async with DelayRelay(("127.0.0.1", peers.ports["s2"]), 0.02) as r2:
            addresses = {"s1": ("127.0.0.1", peers.ports["s1"]), "s2": r2.address, "s3": ("127.0.0.1", 1)}
            # s3's address refuses connections: a peer that never comes up must not hold anything back.
            async with MultiHomedClient(
                ["s1", "s2", "s3"], mesh_connector(peers.credentials(), addresses), FAST
            ) as c:
                await c.wait_healthy(2)
                await anyio.sleep(0.3)
                assert c.best() == "s1"
                replies: list[bytes] = []

                async def one(i: int) -> None:
                    replies.append(await c.call(b"hold:%d" % i))

                async with anyio.create_task_group() as tg:
                    for i in range(20):
                        tg.start_soon(one, i)
                    await anyio.sleep(0.3)
                    peers.kill("s1")
                assert sorted(replies) == sorted(b"s2:hold:%d" % i for i in range(20))
                assert not next(s for s in c.status() if s.name == "s3").healthy

    anyio.run(main)
