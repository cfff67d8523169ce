"""Choosing a listening port before the process that will listen on it exists.

A cluster file or a command line often names every node's port before any node starts, so the
port is picked by one process and bound by another moments later. Picking with ``bind(port 0)``
returns a port from the kernel's *ephemeral* range, the same range the kernel draws from for the
source port of every outgoing connection: in the gap between the pick and the bind, any
connection made on the machine (another node dialling its peers, for instance) can take it, and
the node then fails to start with "address in use". Picking below the ephemeral range removes
that race; only another program that picks listening ports the same way can still collide.
"""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # above the well-known and most registered service ports
_DEFAULT_EPHEMERAL_START = 32_768  # Linux's default when the range file is unreadable


def _ephemeral_start() -> int:
    try:
        low = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_START
    return low if low > _LOWEST + 1_000 else _DEFAULT_EPHEMERAL_START


def free_port(host: str = "127.0.0.1", *, attempts: int = 200) -> int:
    """A TCP port that is free on ``host`` now and outside the kernel's ephemeral range.

    The caller (or a process it starts) binds it soon after. Raises ``OSError`` when no free
    port was found in ``attempts`` tries, or when ``host`` is not an address of this machine.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    top = _ephemeral_start()
    rng = random.SystemRandom()
    for _ in range(attempts):
        port = rng.randrange(_LOWEST, top)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            return port
    raise OSError(errno.EADDRINUSE, f"no free TCP port below {top} on {host} after {attempts} tries")
