"""Fixtures shared by meshnet's identity and transport tests (networks, credentials, metrics)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import meshnet


@pytest.fixture
def anyio_backend() -> str:
    # grpclib runs on asyncio only; the stream transport is backend-neutral but tested on asyncio.
    return "asyncio"


@pytest.fixture(scope="session")
def net_a() -> meshnet.NetworkIdentity:
    return meshnet.NetworkIdentity.generate("alpha")


@pytest.fixture(scope="session")
def net_b() -> meshnet.NetworkIdentity:
    return meshnet.NetworkIdentity.generate("beta")


@pytest.fixture
def member() -> Callable[..., meshnet.MeshCredentials]:
    """member(net, trust=None, validity=None, not_before=None, **options) -> fresh node credentials."""

    def make(
        net: meshnet.NetworkIdentity,
        trust: meshnet.NetworkTrust | None = None,
        validity: dt.timedelta | None = None,
        not_before: dt.datetime | None = None,
        **options: Any,
    ) -> meshnet.MeshCredentials:
        ident = meshnet.NodeIdentity.generate()
        extra: dict[str, Any] = {}
        if validity is not None:
            extra["validity"] = validity
        if not_before is not None:
            extra["not_before"] = not_before
        cert = net.issue(ident.public_key, **extra)
        return meshnet.MeshCredentials(ident, cert, trust if trust is not None else net.trust(), **options)

    return make


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> meshnet.MeshnetMetrics:
    """Server-side metrics on an isolated registry."""
    return meshnet.MeshnetMetrics(registry)


@pytest.fixture
def client_metrics() -> meshnet.MeshnetMetrics:
    """Client-side metrics on their own registry, so server counters are not mixed with the client's."""
    return meshnet.MeshnetMetrics(CollectorRegistry())


@pytest.fixture
def refusals(registry: CollectorRegistry) -> Callable[[str], float]:
    """refusals(reason) -> the server-side mycelium_meshnet_handshakes_refused_total for that reason."""

    def count(reason: str) -> float:
        value = registry.get_sample_value("mycelium_meshnet_handshakes_refused_total", {"reason": reason})
        return value or 0.0

    return count
