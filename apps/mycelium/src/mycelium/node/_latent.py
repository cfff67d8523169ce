"""The Latent Spore on Rhizomorphs and Hyphae: spore's SWIM gossip over meshnet.

Sclerotia are the Primary Spore (authoritative, in the Global DB); the semi-nodes and clients
keep the Latent view among themselves with spore's gossip, every record signed by its node and
validated before it is merged. Contacts are learned from the agent's own peers: whenever a
Rhizomorph or Hypha that gossips appears in a peer's status, it is fed to the gossip as a join.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import anyio

import spore
from meshnet import node_id_for

if TYPE_CHECKING:
    from mycelium.node._agent import Agent


def _contacts(agent: Agent) -> set[str]:
    return {
        st.gossip_address
        for st in agent.peer_status.values()
        if st.gossip_address and st.node_id in agent.members.records
    }


async def run_latent(agent: Agent, port: int) -> None:
    """Gossip until cancelled; publishes the live member count on the agent."""
    role = spore.Role.HYPHA if agent.config.role.value == "hypha" else spore.Role.RHIZOMORPH
    trust = spore.NetworkTrust(
        agent.credentials.network_id, agent.credentials.trust.ca_public_key, node_id_for=node_id_for
    )
    core = spore.LatentSpore(
        agent.credentials.identity,
        trust,
        clock=time.time,
        rng=random.Random(),
        role=role,
        addresses=(f"{agent.config.host}:{port}",),
    )
    joined: set[str] = set()
    async with spore.LatentSporeNode(core, agent.credentials, host=agent.config.host, port=port) as node:
        agent.latent = core
        while True:
            fresh = _contacts(agent) - joined - {node.address}
            if fresh:
                node.join(tuple(sorted(fresh)))
                joined |= fresh
            await anyio.sleep(agent.config.probe_interval)
