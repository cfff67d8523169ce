"""Shared fixtures: deterministic identities and a key directory for a small world."""

from __future__ import annotations

import hashlib

import pytest

import bftconsensus as b


@pytest.fixture(scope="session")
def world() -> dict[str, b.Ed25519Signer]:
    """Signers keyed by node id: e0..e8 executors/replicas, a coordinator and two clients."""
    names = [f"e{i}" for i in range(9)] + ["coord", "client", "client2"]
    return {n: b.Ed25519Signer.from_seed(n.encode(), n) for n in names}


@pytest.fixture(scope="session")
def keys(world: dict[str, b.Ed25519Signer]) -> dict[str, bytes]:
    return {n: s.public_key for n, s in world.items()}


@pytest.fixture(scope="session")
def functions() -> dict[str, b.DeterministicFunction]:
    return {"sha256": lambda d: hashlib.sha256(d).digest(), "upper": lambda d: d.upper()}
