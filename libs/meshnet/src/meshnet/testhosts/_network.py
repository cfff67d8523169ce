"""N test hosts on one machine: one network namespace each, joined by a bridge in a namespace of its own.

Layout for ``HostNetwork(3)`` (run id ``<prefix>-<pid>-<n>``)::

    <run>-br  : bridge br0 (10.77.0.1/24), veths v0 v1 v2 enslaved to it
    <run>-h0  : eth0 10.77.0.2/24, lo       (veth peer of v0)
    <run>-h1  : eth0 10.77.0.3/24, lo
    <run>-h2  : eth0 10.77.0.4/24, lo

Nothing touches the root namespace and no namespace has a default route, so no packet can leave
the test world; two runs side by side use the same addresses without meeting. Partitions are
nftables rules in the hosts' own namespaces, dropping by peer address, so they cut connections
that are already open too, as a real network partition would.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.abc

from meshnet.testhosts._errors import HostNetworkError
from meshnet.testhosts._netns import delete_netns, in_netns, list_netns, run_cmd, socket_in_netns
from meshnet.testhosts._process import HostProcess

__all__ = ["DEFAULT_PREFIX", "Host", "HostNetwork", "cleanup_leftovers"]

DEFAULT_PREFIX = "myc"
SUBNET = "10.77.0"
MAX_HOSTS = 200
_TABLE = "meshnet_testhosts"
_runs = itertools.count()
T = TypeVar("T")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_leftovers(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete namespaces ``<prefix>-<pid>-...`` whose creating process is gone (a crashed run).

    Runs of live processes are left alone, so parallel test sessions do not tear each other down.
    Returns the names deleted.
    """
    removed = []
    for name in list_netns():
        head, _, rest = name.partition("-")
        if head != prefix:
            continue
        pid_text = rest.split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            delete_netns(name)
            removed.append(name)
    return removed


class Host:
    """One test host: a network namespace with one address on the shared bridge."""

    def __init__(self, network: HostNetwork, index: int) -> None:
        self.network = network
        self.index = index
        self.name = f"h{index}"
        self.netns = f"{network.run_id}-{self.name}"
        self.address = f"{SUBNET}.{index + 2}"
        self.processes: list[HostProcess] = []

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.address}, netns={self.netns})"

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, input_text: str | None = None) -> str:
        """Run a command to completion inside the host; its stdout, or HostNetworkError."""
        return run_cmd(["ip", "netns", "exec", self.netns, *argv], input_text=input_text, timeout=timeout)

    def spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> HostProcess:
        """Start a long-running process inside the host (killed when the network closes)."""
        log = self.network.workdir / f"{self.name}-{len(self.processes)}-{Path(argv[0]).name}.log"
        proc = HostProcess(self.netns, argv, log_path=log, env=env, cwd=cwd)
        self.processes.append(proc)
        return proc

    def run_here(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on a thread inside this host's namespace and return its result.

        ``host.run_here(lambda: anyio.run(main))`` runs a whole async client as if on this host:
        every socket its event loop opens belongs to the host (its address, its partitions).
        """
        return in_netns(self.netns, fn)

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket inside this host's namespace, for the test process itself to use."""
        return socket_in_netns(self.netns, family, kind)

    async def connect_tcp(
        self, address: str, port: int, *, connect_timeout: float = 5.0
    ) -> anyio.abc.SocketStream:
        """Open a TCP connection from this host (as the test process, no subprocess needed)."""
        sock = await anyio.to_thread.run_sync(self.socket)
        try:
            sock.settimeout(connect_timeout)
            await anyio.to_thread.run_sync(sock.connect, (address, port))
            sock.setblocking(False)
            return await anyio.abc.SocketStream.from_socket(sock)
        except OSError as exc:
            sock.close()
            raise HostNetworkError(f"{self.name} could not connect to {address}:{port}: {exc}") from exc

    async def create_tcp_listener(self, port: int = 0, address: str = "0.0.0.0") -> anyio.abc.SocketListener:
        """Listen for TCP inside this host; ``listener.extra(SocketAttribute.local_port)`` tells the port."""
        sock = await anyio.to_thread.run_sync(self.socket)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise HostNetworkError(f"{self.name} could not listen on {address}:{port}: {exc}") from exc
        return await anyio.abc.SocketListener.from_socket(sock)


class HostNetwork:
    """A context manager that builds N hosts on a bridge and removes all of it on exit.

    Entering also removes leftovers of earlier runs with the same prefix whose process died.
    """

    def __init__(self, hosts: int = 2, *, prefix: str = DEFAULT_PREFIX) -> None:
        if not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
            raise HostNetworkError(f"hosts must be an int in 1..{MAX_HOSTS}, got {hosts!r}")
        if not prefix.isalnum() or len(prefix) > 12:
            raise HostNetworkError(
                f"prefix must be 1-12 letters/digits (it starts netns names), got {prefix!r}"
            )
        self.prefix = prefix
        self.run_id = f"{prefix}-{os.getpid()}-{next(_runs)}"
        self.bridge_netns = f"{self.run_id}-br"
        self.hosts: tuple[Host, ...] = tuple(Host(self, i) for i in range(hosts))
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-"))
        self._created: list[str] = []

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name or h.address == name:
                return h
        raise HostNetworkError(f"no host {name!r}; hosts are {', '.join(h.name for h in self.hosts)}")

    def __enter__(self) -> HostNetwork:
        cleanup_leftovers(self.prefix)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _netns_add(self, name: str) -> None:
        run_cmd(["ip", "netns", "add", name])
        self._created.append(name)
        run_cmd(["ip", "-n", name, "link", "set", "lo", "up"])

    def _build(self) -> None:
        br = self.bridge_netns
        self._netns_add(br)
        run_cmd(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        run_cmd(["ip", "-n", br, "addr", "add", f"{SUBNET}.1/24", "dev", "br0"])
        run_cmd(["ip", "-n", br, "link", "set", "br0", "up"])
        for h in self.hosts:
            self._netns_add(h.netns)
            veth = f"v{h.index}"
            run_cmd(
                [
                    "ip",
                    "-n",
                    br,
                    "link",
                    "add",
                    veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    h.netns,
                ]
            )
            run_cmd(["ip", "-n", br, "link", "set", veth, "master", "br0", "up"])
            run_cmd(["ip", "-n", h.netns, "addr", "add", f"{h.address}/24", "dev", "eth0"])
            run_cmd(["ip", "-n", h.netns, "link", "set", "eth0", "up"])
            h.run(["nft", "-f", "-"], input_text=_base_ruleset())

    def close(self) -> None:
        """Kill every spawned process and delete every namespace this run made (idempotent)."""
        for h in self.hosts:
            for proc in h.processes:
                with contextlib.suppress(Exception):
                    proc.kill()
        for name in reversed(self._created):
            delete_netns(name)
        self._created.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ partitions
    def _resolve(self, group: Iterable[Host | str]) -> list[Host]:
        if isinstance(group, str | Host):
            raise HostNetworkError("a group must be a collection of hosts, e.g. [net[0]] or {'h0', 'h1'}")
        out = [g if isinstance(g, Host) else self.host(g) for g in group]
        return sorted(set(out), key=lambda h: h.index)

    def partition(self, *groups: Iterable[Host | str]) -> None:
        """Cut all traffic between hosts of different groups, both ways (adds to existing cuts)."""
        resolved = [self._resolve(g) for g in groups]
        if len(resolved) < 2:
            raise HostNetworkError("partition needs at least two groups of hosts")
        for i, a in enumerate(resolved):
            for j, b in enumerate(resolved):
                if i != j:
                    self.partition_oneway(a, b)

    def partition_oneway(self, senders: Iterable[Host | str], receivers: Iterable[Host | str]) -> None:
        """Drop packets from ``senders`` to ``receivers`` (filtered on the receivers' input)."""
        src = self._resolve(senders)
        for r in self._resolve(receivers):
            addrs = [s.address for s in src if s is not r]
            if addrs:
                r.run(
                    ["nft", "add", "element", "inet", _TABLE, "blocked_from", "{ " + ", ".join(addrs) + " }"]
                )

    def heal(self) -> None:
        """Remove every partition."""
        for h in self.hosts:
            h.run(["nft", "flush", "set", "inet", _TABLE, "blocked_from"])


def _base_ruleset() -> str:
    # Dropping on input by source address: a packet from a cut-off peer never reaches a socket.
    return (
        f"table inet {_TABLE} {{\n"
        "  set blocked_from { type ipv4_addr; }\n"
        "  chain input { type filter hook input priority 0; policy accept; ip saddr @blocked_from drop; }\n"
        "}\n"
    )
