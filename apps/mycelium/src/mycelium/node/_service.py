"""The client-facing service of a Sclerotium, and the Hypha that uses it through multi-homing.

Sclerotia answer work calls on a separate meshnet port with meshnet's call protocol
(``serve_calls``); a Hypha keeps live connections to every Sclerotium it knows through
``MultiHomedClient``, sends each call to the fastest healthy one and, when that one dies, retries
on the next at once (R9.1-2). The work itself is deliberately small (hash a payload): what is
exercised is reaching the backbone, not computing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

import obs
from meshnet import (
    FramedStream,
    MeshnetError,
    MultiHomeConfig,
    MultiHomedClient,
    mesh_connector,
    serve_calls,
)
from mycelium.node._pb.agent.v1 import WorkRequest, WorkResult

if TYPE_CHECKING:
    from mycelium.node._agent import Agent

_metrics = obs.Metrics("app")
_work_counter = _metrics.counter("work_calls", "Hypha work calls by outcome", labels=("outcome",))
_failover_counter = _metrics.counter("failovers", "Times a Hypha's calls moved to another Sclerotium")
MAX_WORK_PAYLOAD = 64 * 1024


class ServiceRefusedError(Exception):
    """Sent back to the caller as an error reply (type and message only)."""


def serve_work(agent: Agent) -> Callable[[FramedStream], Awaitable[None]]:
    """The MeshServer handler of the service port."""

    async def handle(request: bytes) -> bytes:
        if not agent.role.is_sclerotium:
            raise ServiceRefusedError(f"{agent.config.name} is a {agent.role.label}, not a Sclerotium")
        if len(request) > MAX_WORK_PAYLOAD + 64:
            raise ServiceRefusedError(f"work request of {len(request)} bytes is over the limit")
        try:
            work = WorkRequest().parse(request)
        except Exception:  # betterproto's assorted errors on garbage all mean "malformed"
            raise ServiceRefusedError("malformed work request") from None
        agent.work_done += 1
        digest = hashlib.sha256(work.payload).digest()
        return bytes(WorkResult(sequence=work.sequence, digest=digest, served_by=agent.config.name))

    async def on_connection(stream: FramedStream) -> None:
        await serve_calls(stream, handle)

    return on_connection


def _sclerotia(agent: Agent) -> dict[str, tuple[str, int]]:
    """Service addresses of every Sclerotium this node has heard of (alive or not: the client's
    own health checks decide whom to use)."""
    found: dict[str, tuple[str, int]] = {}
    for node_id, st in agent.peer_status.items():
        rec = agent.members.records.get(node_id)
        role = rec.role if rec is not None else st.role
        if role.endswith("sclerotium") and st.service_address:
            host, _, port = st.service_address.rpartition(":")
            found[st.name] = (host, int(port))
    return found


async def run_hypha(agent: Agent) -> None:
    """Do work for ever through the known Sclerotia; rebuild the client when that set changes."""
    sequence = 0
    while True:
        peers = _sclerotia(agent)
        if not peers:
            await anyio.sleep(agent.config.work_interval)
            continue
        connector = mesh_connector(agent.credentials, peers)
        async with MultiHomedClient(sorted(peers), connector, MultiHomeConfig()) as client:
            failovers_seen = 0
            while _sclerotia(agent).keys() == peers.keys():
                await anyio.sleep(agent.config.work_interval)
                sequence += 1
                payload = f"{agent.config.name}:{sequence}".encode()
                try:
                    reply = await client.call(
                        bytes(WorkRequest(sequence=sequence, payload=payload)), budget=5.0
                    )
                    result = WorkResult().parse(reply)
                except (MeshnetError, ValueError) as exc:
                    _work_counter.labels(outcome="failed").inc()
                    agent.log.warning("work_failed", error=str(exc))
                    continue
                if result.digest != hashlib.sha256(payload).digest():
                    _work_counter.labels(outcome="wrong_result").inc()
                    agent.log.warning("work_wrong_result", served_by=result.served_by)
                    continue
                if client.failovers > failovers_seen:
                    failovers_seen = client.failovers
                    _failover_counter.inc()
                    agent.log.warning("failover", from_node=agent.serving_via, to_node=result.served_by)
                agent.serving_via = result.served_by
                agent.work_done += 1
                _work_counter.labels(outcome="ok").inc()
