"""Thin, checked wrappers around ``ip``/``nft`` and the ``setns(2)`` trick for sockets in a namespace.

We shell out to iproute2 and nftables rather than link a netlink library: the commands are what an
operator would type to inspect the same state, and they are present on every Linux that has
namespaces. Sockets are the exception: a socket belongs to the network namespace of the thread that
created it, so :func:`socket_in_netns` creates it on a short-lived thread that joined the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from meshnet.testhosts._errors import HostNetworkError

__all__ = [
    "NETNS_DIR",
    "delete_netns",
    "in_netns",
    "list_netns",
    "netns_unavailable_reason",
    "run_cmd",
    "socket_in_netns",
]

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def run_cmd(argv: Sequence[str], *, input_text: str | None = None, timeout: float = 30.0) -> str:
    """Run a setup command; raise :class:`HostNetworkError` naming it and its stderr if it fails."""
    try:
        done = subprocess.run(
            list(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise HostNetworkError(f"command {argv[0]!r} not found (install iproute2/nftables)") from None
    except subprocess.TimeoutExpired:
        raise HostNetworkError(f"command {' '.join(argv)!r} took longer than {timeout} s") from None
    if done.returncode != 0:
        raise HostNetworkError(
            f"command {' '.join(argv)!r} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def list_netns() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    out = run_cmd(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_netns(name: str) -> None:
    """Kill every process left in the namespace, then delete it (idempotent)."""
    with contextlib.suppress(HostNetworkError):
        for pid in run_cmd(["ip", "netns", "pids", name]).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
    with contextlib.suppress(HostNetworkError):
        run_cmd(["ip", "netns", "delete", name])


_probe_lock = threading.Lock()
_probe_result: list[str | None] = []


def netns_unavailable_reason() -> str | None:
    """None if we can create namespaces, veths, bridges and nft tables here; else why not."""
    with _probe_lock:
        if not _probe_result:
            _probe_result.append(_probe())
        return _probe_result[0]


def _probe() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (run the tests as root)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command is not installed"
    name = f"meshnet-probe-{os.getpid()}"
    try:
        run_cmd(["ip", "netns", "add", name])
        try:
            run_cmd(["ip", "-n", name, "link", "add", "pb0", "type", "bridge"])
            run_cmd(["ip", "-n", name, "link", "add", "pv0", "type", "veth", "peer", "name", "pv1"])
            run_cmd(["ip", "netns", "exec", name, "nft", "add", "table", "inet", "probe"])
        finally:
            delete_netns(name)
    except HostNetworkError as exc:
        return f"network namespaces are not usable here: {exc}"
    return None


def _libc_setns() -> Callable[[int, int], int]:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.setns
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int

    def setns(fd: int, nstype: int) -> int:
        return int(fn(fd, nstype))

    return setns


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread that joined ``netns`` (None: the current namespace)."""
    if netns is None:
        return fn()
    path = NETNS_DIR / netns
    if not path.exists():
        raise HostNetworkError(f"network namespace {netns!r} does not exist ({path} missing)")
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            setns = _libc_setns()
            fd = os.open(path, os.O_RDONLY)
            try:
                if setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise HostNetworkError(f"setns into {netns!r} failed: {os.strerror(err)}")
            finally:
                os.close(fd)
            # This thread is throwaway, so it never has to switch back.
            outcome.append(fn())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def socket_in_netns(
    netns: str | None, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A new socket that lives in ``netns`` (usable from any thread afterwards)."""
    return in_netns(netns, lambda: socket.socket(family, kind))
