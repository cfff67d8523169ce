"""Shared fixtures for spore's tests: deterministic keys, a network, a controllable clock."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

import spore


@attrs.define
class Clock:
    """A manual clock: tests move time explicitly."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def network_signer() -> spore.Ed25519Signer:
    return spore.Ed25519Signer.from_seed(b"network-key")


@pytest.fixture
def trust(network_signer: spore.Ed25519Signer) -> spore.NetworkTrust:
    return spore.NetworkTrust("net-a", network_signer.public_key)


@pytest.fixture
def signer_for() -> Callable[[str], spore.Ed25519Signer]:
    def make(name: str) -> spore.Ed25519Signer:
        return spore.Ed25519Signer.from_seed(name.encode())

    return make


@pytest.fixture
def make_record(clock: Clock, network_signer: spore.Ed25519Signer) -> Callable[..., spore.SporeRecord]:
    """make_record(name, incarnation=1, role=RHIZOMORPH, network_id="net-a", ttl=3600, **fields)."""

    def make(
        name: str,
        incarnation: int = 1,
        role: spore.Role = spore.Role.RHIZOMORPH,
        network_id: str = "net-a",
        ttl: float = 3600.0,
        **fields: object,
    ) -> spore.SporeRecord:
        return spore.build_record(
            spore.Ed25519Signer.from_seed(name.encode()),
            network_id=network_id,
            role=role,
            addresses=fields.pop("addresses", ("127.0.0.1:7000",)),  # type: ignore[arg-type]
            services=fields.pop("services", ("storage",)),  # type: ignore[arg-type]
            capabilities=spore.Capabilities(cpu_millicores=2000, memory_bytes=1 << 30),
            incarnation=incarnation,
            expires_at=clock.now + ttl,
            network_signer=network_signer if role is spore.Role.SCLEROTIUM else None,
        )

    return make


NODE_SCRIPT = textwrap.dedent(
    """
    import json, os, random, sys, time
    import anyio, meshnet, spore

    net_path, host, port, contacts, out, cfg = sys.argv[1:7]
    net = meshnet.NetworkIdentity.load(net_path)
    ident = meshnet.NodeIdentity.generate()
    core = spore.LatentSpore(
        ident, spore.NetworkTrust(net.network_id, net.public_key), clock=time.time, rng=random.Random(),
        config=spore.GossipConfig(**json.loads(cfg)), addresses=(f"{host}:{port}",),
    )

    async def main() -> None:
        contact = tuple(c for c in contacts.split(",") if c)
        creds = net.credentials_for(ident)
        async with spore.LatentSporeNode(core, creds, host=host, port=int(port), contacts=contact):
            while True:
                view = {
                    "id": core.node_id,
                    "states": {n: m.state.name for n, m in core.members.items()},
                    "unreachable": sorted(core.partition_report().unreachable),
                }
                with open(out + ".tmp", "w") as f:
                    json.dump(view, f)
                os.replace(out + ".tmp", out)
                await anyio.sleep(0.2)

    anyio.run(main)
    """
)


@pytest.fixture
def node_script(tmp_path: Path) -> Path:
    """A spore node as a standalone program: args network-key host port contacts view-file config."""
    path = tmp_path / "spore_node.py"
    path.write_text(NODE_SCRIPT)
    return path
