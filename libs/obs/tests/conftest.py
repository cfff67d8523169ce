"""Shared fixtures of the obs tests."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the backend the Mycelium app uses)."""
    return "asyncio"


@pytest.fixture
def listen_port() -> int:
    """A port for a server process the test starts, chosen below the kernel's ephemeral range.

    A port picked with bind(port 0) comes from the range outgoing connections draw their source
    ports from, so one could take it before the server binds it (meshnet.free_port does the same
    thing; obs, the foundation, does not depend on meshnet).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, max(low, 11_000))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
