"""`mycelium up --netns`: every node on a real, isolated host (a network namespace of its own).

The nodes run inside a :class:`meshnet.testhosts.HostNetwork`: one namespace per node on a private
bridge (10.77.0.x, no route out), so node-to-node traffic crosses real interfaces rather than
loopback. Those addresses cannot be reached from the root namespace, where the operator, the
browser and the other ``mycelium`` commands live, so the supervisor runs a small forwarder: for
each node a listener on ``127.0.0.1:<port>`` whose connections it relays into the node's namespace
(status API, dashboard, metrics). The state file records those loopback addresses, so ``status``,
``nodes``, ``kill`` and ``logs`` work unchanged (the recorded pid is the node's own process:
``ip netns exec`` replaces itself with the command).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from meshnet.testhosts import Host, HostNetwork, HostNetworkError, netns_unavailable_reason
from mycelium.local._state import LocalNetworkError
from mycelium.local._up import Layout, NodePlan, UpOptions, plan_nodes

__all__ = ["NETNS_PREFIX", "HttpForwarder", "netns_hosts", "require_netns"]

# Namespaces are named ``mycup-<supervisor pid>-<n>-h<i>``: distinct from the test harness's
# default prefix, and a crashed supervisor's leftovers are removed by the next ``up --netns``.
NETNS_PREFIX = "mycup"
# Inside a host nothing else listens, so every node uses the same two ports below the ephemeral
# range (a node's other, kernel-chosen port can never take them).
MESH_PORT = 7946
HTTP_PORT = 8080
_CHUNK = 65536


def require_netns(etcd: str) -> None:
    """Fail with one clear line if ``--netns`` cannot work here (not root, no netns, an etcd)."""
    if etcd:
        raise LocalNetworkError(
            "--netns cannot be combined with --etcd: the hosts have no route out of their namespaces,"
            " so they could not reach it; --netns uses the embedded Global DB"
        )
    if os.geteuid() != 0:
        raise LocalNetworkError(
            "--netns needs root: it creates network namespaces, a bridge and nftables rules"
            " (run it with sudo, or leave out --netns)"
        )
    reason = netns_unavailable_reason()
    if reason is not None:
        raise LocalNetworkError(f"--netns is not available: {reason}")


class HttpForwarder:
    """Loopback listeners in the root namespace, each relaying TCP to one host's address and port.

    It runs its own event loop on a background thread, because the supervisor is a plain blocking
    loop. It is bounded: at most ``max_connections`` relayed connections at a time (more are closed
    at once) and a connection with no bytes either way for ``idle_timeout`` seconds is closed.
    """

    def __init__(self, *, max_connections: int = 64, idle_timeout: float = 120.0) -> None:
        if max_connections < 1 or idle_timeout <= 0:
            raise LocalNetworkError(
                f"max_connections must be >= 1 and idle_timeout > 0, got {max_connections}, {idle_timeout}"
            )
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.active = 0
        self._routes: list[tuple[socket.socket, Host, int]] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: list[BaseException] = []
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._scope: anyio.CancelScope | None = None

    def add(self, host: Host, port: int) -> int:
        """Forward a new loopback port to ``host.address:port``; returns the loopback port."""
        if self._thread is not None:
            raise RuntimeError("add every route before start()")
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._routes.append((sock, host, port))
        loopback_port: int = sock.getsockname()[1]
        return loopback_port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mycelium-forwarder", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0) or self._failure:
            self.close()
            raise LocalNetworkError(f"the loopback forwarder did not start: {self._failure or 'timeout'}")

    def close(self) -> None:
        """Stop accepting, cut every relayed connection, join the thread (idempotent)."""
        token, self._token = self._token, None
        if token is not None and self._scope is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                anyio.from_thread.run_sync(self._scope.cancel, token=token)
        if self._thread is not None:
            self._thread.join(10.0)
        for sock, _, _ in self._routes:
            sock.close()

    def _run(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException as exc:  # reported by start(), which then fails the `up`
            self._failure.append(exc)
            self._ready.set()

    async def _main(self) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            async with anyio.create_task_group() as tg:
                for sock, host, port in self._routes:
                    listener = await anyio.abc.SocketListener.from_socket(sock)
                    tg.start_soon(listener.serve, self._handler(host, port), tg)
                self._token = anyio.lowlevel.current_token()
                self._ready.set()

    def _handler(self, host: Host, port: int) -> Callable[[anyio.abc.SocketStream], object]:
        async def handle(client: anyio.abc.SocketStream) -> None:
            async with client:
                if self.active >= self.max_connections:
                    return
                self.active += 1
                try:
                    await self._relay(client, host, port)
                finally:
                    self.active -= 1

        return handle

    async def _relay(self, client: anyio.abc.SocketStream, host: Host, port: int) -> None:
        try:
            upstream = await host.connect_tcp(host.address, port, connect_timeout=5.0)
        except HostNetworkError:
            return  # the node is not listening (yet, or any more): the client sees a closed connection
        # The scope's deadline is pushed out whenever bytes move, so it fires only on idleness.
        with anyio.CancelScope(deadline=anyio.current_time() + self.idle_timeout) as idle:
            async with upstream, anyio.create_task_group() as tg:

                async def pump(src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
                    try:
                        while True:
                            data = await src.receive(_CHUNK)
                            idle.deadline = anyio.current_time() + self.idle_timeout
                            await dst.send(data)
                    except anyio.EndOfStream:
                        with contextlib.suppress(
                            OSError, anyio.BrokenResourceError, anyio.ClosedResourceError
                        ):
                            await dst.send_eof()
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        tg.cancel_scope.cancel()

                tg.start_soon(pump, client, upstream)
                tg.start_soon(pump, upstream, client)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def netns_hosts(opts: UpOptions, say: Callable[[str], None]) -> Iterator[Layout]:
    """One host per planned node plus the forwarder; yields the layout for ``start``.

    On exit (normal, error, Ctrl-C or SIGTERM) the forwarder stops and every namespace is deleted,
    which also kills whatever still runs inside. SIGTERM is turned into KeyboardInterrupt from here
    on, so the namespaces are removed even if the network is stopped while it is still forming.
    """
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    count = len(plan_nodes(opts))
    try:
        net = HostNetwork(count, prefix=NETNS_PREFIX)
    except HostNetworkError as exc:
        raise LocalNetworkError(f"--netns: {exc}") from None
    forwarder = HttpForwarder()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(net)
        except HostNetworkError as exc:
            raise LocalNetworkError(f"--netns: could not build the hosts: {exc}") from None
        say(f"built {count} hosts (network namespaces {net.run_id}-h0…h{count - 1}, bridge 10.77.0.1/24)")
        stack.callback(forwarder.close)

        def layout(planned: list[tuple[str, str]]) -> list[NodePlan]:
            plans = []
            for (name, role), host in zip(planned, net.hosts, strict=True):
                loopback = forwarder.add(host, HTTP_PORT)
                plans.append(
                    NodePlan(
                        name, role, host.address, MESH_PORT, HTTP_PORT, f"127.0.0.1:{loopback}",
                        command_prefix=("ip", "netns", "exec", host.netns),
                    )
                )  # fmt: skip
            forwarder.start()
            return plans

        yield layout
