"""Real hosts in network namespaces: reachability, partitions, process control, added latency.

Everything here except the loopback relay test needs root and working network namespaces; those
tests skip with the reason when that is not the case.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import anyio.abc
import pytest

from meshnet.testhosts import (
    DelayRelay,
    Host,
    HostNetwork,
    HostNetworkError,
    HostProcess,
    cleanup_leftovers,
    netns_unavailable_reason,
)
from meshnet.testhosts._netns import list_netns

ECHO_PORT = 7000
ECHO_SERVER = """
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(64)
print("listening", flush=True)
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
"""
ECHO_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
    s.sendall(sys.argv[4].encode())
    print(s.recv(1024).decode())
"""


def needs_netns() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def net() -> Iterator[HostNetwork]:
    needs_netns()
    with HostNetwork(3) as network:
        yield network


def echo_from(src: Host, dst: Host, message: str, timeout: float = 2.0) -> str:
    argv = [sys.executable, "-c", ECHO_CLIENT, dst.address, str(ECHO_PORT), str(timeout), message]
    return src.run(argv, timeout=timeout + 10).strip()


def start_echo(host: Host) -> None:
    host.spawn([sys.executable, "-c", ECHO_SERVER, str(ECHO_PORT)])
    wait_listening(host)


def wait_listening(host: Host) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if f":{ECHO_PORT} " in host.run(["ss", "-ltnH"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"echo server in {host} never listened")


def reachable(src: Host, dst: Host) -> bool:
    try:
        return echo_from(src, dst, "probe", timeout=0.5) == "probe"
    except HostNetworkError:
        return False


@pytest.mark.integration
def test_hosts_reach_each_other_over_tcp_across_the_bridge(net: HostNetwork) -> None:
    h0, h1, _h2 = net.hosts
    assert (h0.address, h1.address) == ("10.77.0.2", "10.77.0.3")
    start_echo(h0)
    start_echo(h1)
    assert echo_from(h0, h1, "ping from h0") == "ping from h0"
    assert echo_from(h1, h0, "ping from h1") == "ping from h1"


@pytest.mark.integration
def test_a_partition_blocks_traffic_and_heal_restores_it(net: HostNetwork) -> None:
    h0, h1, h2 = net.hosts
    for h in net.hosts:
        start_echo(h)
    net.partition([h0], [h1, h2])
    assert not reachable(h0, h1)
    assert not reachable(h2, h0)
    assert reachable(h1, h2)  # same side of the cut
    net.heal()
    assert reachable(h0, h1)
    assert reachable(h2, h0)


@pytest.mark.integration
def test_a_oneway_partition_drops_only_one_direction(net: HostNetwork) -> None:
    h0, h1, _ = net.hosts

    async def main() -> None:
        # UDP shows one-way loss directly (TCP needs both directions to connect at all).
        sock_rx = h1.socket(kind=socket.SOCK_DGRAM)
        sock_rx.bind((h1.address, 9999))
        sock_rx.settimeout(0.5)
        sock_tx = h0.socket(kind=socket.SOCK_DGRAM)
        net.partition_oneway([h0], [h1])
        sock_tx.sendto(b"lost", (h1.address, 9999))
        with pytest.raises(TimeoutError):
            sock_rx.recvfrom(100)
        sock_rx.sendto(b"through", (h0.address, 9998))  # h1 -> h0 still allowed (no listener: fine)
        net.heal()
        sock_tx.sendto(b"arrives", (h1.address, 9999))
        assert sock_rx.recvfrom(100)[0] == b"arrives"
        sock_rx.close()
        sock_tx.close()

    anyio.run(main)


@pytest.mark.integration
def test_a_partition_also_stalls_an_already_open_connection(net: HostNetwork) -> None:
    h0, h1, _ = net.hosts
    start_echo(h1)

    async def main() -> None:
        stream = await h0.connect_tcp(h1.address, ECHO_PORT)
        async with stream:
            await stream.send(b"before")
            assert await stream.receive() == b"before"
            net.partition([h0], [h1])
            await stream.send(b"during")
            with anyio.move_on_after(0.5) as scope:
                await stream.receive()
            assert scope.cancelled_caught
            net.heal()
            with anyio.fail_after(10):  # TCP retransmits once the path is back
                assert await stream.receive() == b"during"

    anyio.run(main)


@pytest.mark.integration
def test_a_killed_process_can_be_restarted(net: HostNetwork) -> None:
    h0, h1, _ = net.hosts
    server = h1.spawn([sys.executable, "-c", ECHO_SERVER, str(ECHO_PORT)])
    wait_listening(h1)
    assert reachable(h0, h1)
    server.kill()
    assert not server.running
    assert server.returncode == -9
    assert not reachable(h0, h1)
    server.restart()
    wait_listening(h1)
    assert reachable(h0, h1)
    assert server.starts == 2
    assert server.output().count("listening") == 2


@pytest.mark.integration
def test_a_relay_in_a_host_adds_at_least_its_delay_each_way(net: HostNetwork) -> None:
    h0, h1, _ = net.hosts
    start_echo(h1)
    delay = 0.15

    async def main() -> None:
        async with DelayRelay((h1.address, ECHO_PORT), delay, netns=h0.netns) as relay:
            stream = await h0.connect_tcp("127.0.0.1", relay.port)
            async with stream:
                started = anyio.current_time()
                await stream.send(b"slow")
                assert await stream.receive() == b"slow"
                assert anyio.current_time() - started >= 2 * delay
            assert relay.connections == 1

    anyio.run(main)


@pytest.mark.integration
def test_everything_is_removed_on_exit_even_after_a_failure() -> None:
    needs_netns()
    network = HostNetwork(2)
    spawned: list[HostProcess] = []

    def failing_test() -> None:
        with network:
            spawned.append(network[0].spawn([sys.executable, "-c", "import time; time.sleep(60)"]))
            assert any(name.startswith(network.run_id) for name in list_netns())
            raise RuntimeError("test blew up")

    with pytest.raises(RuntimeError, match="test blew up"):
        failing_test()
    proc = spawned[0]
    assert not any(name.startswith(network.run_id) for name in list_netns())
    assert not proc.running
    assert not network.workdir.exists()


@pytest.mark.integration
def test_leftovers_of_dead_runs_are_removed_and_live_runs_kept() -> None:
    needs_netns()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = f"myc-{dead.pid}-0-h0"
    live = f"myc-{os.getpid()}-999-h0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    subprocess.run(["ip", "netns", "add", live], check=True)
    try:
        removed = cleanup_leftovers("myc")
        names = list_netns()
        assert stale in removed
        assert stale not in names
        assert live in names
    finally:
        subprocess.run(["ip", "netns", "delete", live], check=False)
        subprocess.run(["ip", "netns", "delete", stale], check=False, capture_output=True)


def test_bad_arguments_are_refused_with_the_field_named() -> None:
    with pytest.raises(HostNetworkError, match="hosts must be an int"):
        HostNetwork(0)
    with pytest.raises(HostNetworkError, match="prefix must be"):
        HostNetwork(2, prefix="bad-prefix")
    with pytest.raises(HostNetworkError, match=r"DelayRelay\.delay"):
        DelayRelay(("127.0.0.1", 1), -1.0)


def test_a_loopback_relay_delays_without_root() -> None:
    """The relay needs no namespace: on loopback it shows latency between local processes too."""
    delay = 0.1

    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send(chunk)

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))  # noqa: S610
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with DelayRelay(("127.0.0.1", port), delay) as relay:
                stream = await anyio.connect_tcp("127.0.0.1", relay.port)
                async with stream:
                    payload = os.urandom(300_000)
                    started = anyio.current_time()
                    await stream.send(payload)
                    got = b""
                    while len(got) < len(payload):
                        got += await stream.receive()
                    assert got == payload
                    assert anyio.current_time() - started >= 2 * delay
                    await stream.send_eof()
                    with anyio.fail_after(5):  # the EOF is passed on, so the echo side closes
                        with pytest.raises(anyio.EndOfStream):
                            await stream.receive()
            tg.cancel_scope.cancel()

    anyio.run(main)
