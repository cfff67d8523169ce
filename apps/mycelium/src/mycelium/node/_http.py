"""The agent's HTTP face: health probes, Prometheus metrics, status JSON and the dashboard.

Plain HTTP on the node's own address: it is for the operator's browser and Prometheus on the
same host or admin network; node-to-node traffic never uses it (that goes over meshnet).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from importlib.resources import files
from typing import Any

import betterproto
import prometheus_client
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mycelium.node._agent import Agent
from mycelium.node._members import ALIVE
from mycelium.node._pb.agent.v1 import NodeStatus


def status_json(s: NodeStatus) -> dict[str, Any]:
    doc: dict[str, Any] = s.to_pydict(casing=betterproto.Casing.SNAKE, include_default_values=True)  # type: ignore[arg-type]
    return doc


def network_view(agent: Agent) -> dict[str, Any]:
    """Nodes by role, links (who sees whom, first-hand), health and key metrics, from this node."""
    me = agent.status()
    statuses = {me.node_id: me}
    for node_id, st in agent.peer_status.items():
        rec = agent.members.records.get(node_id)
        if rec is not None and rec.state == ALIVE:
            statuses[node_id] = st
    nodes: list[dict[str, Any]] = [
        {
            "node_id": me.node_id,
            "name": me.name,
            "role": me.role,
            "state": ALIVE,
            "since": me.started_at,
            "http_address": me.http_address,
        }
    ]
    for rec in sorted(agent.members.records.values(), key=lambda r: r.name):
        nodes.append(
            {
                "node_id": rec.node_id,
                "name": rec.name,
                "role": rec.role,
                "state": rec.state,
                "since": rec.since,
                "http_address": rec.http_address,
            }
        )
    for n in nodes:
        found = statuses.get(n["node_id"])
        if found is not None:
            n["load"] = found.capacity.cpu_load
            n["cpus"] = found.capacity.cpus
            n["memory_bytes"] = found.capacity.memory_bytes
            n["work_done"] = found.work_done
            n["serving_via"] = found.serving_via
            n["latent_alive"] = found.latent_alive
    links = [
        {"from": st.node_id, "to": m.node_id, "state": m.state}
        for st in statuses.values()
        for m in st.members
        if m.node_id != st.node_id
    ]
    counts = {"alive": 0, "suspect": 0, "dead": 0}
    for n in nodes:
        counts[n["state"]] = counts.get(n["state"], 0) + 1
    alerts = [a for a in agent.alerts or [] if a["state"] == "firing"]
    return {
        "network_id": me.network_id,
        "observer": me.name,
        "nodes": nodes,
        "links": links,
        "counts": counts,
        "alerts": alerts,
        "globaldb": agent.db_view,
        "decisions": agent.decisions[-10:],
    }


def build_app(agent: Agent) -> Starlette:
    async def healthz(_req: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_req: Request) -> Response:
        if agent.ready.is_set():
            return PlainTextResponse("ready")
        return PlainTextResponse("joining", status_code=503)

    async def metrics(_req: Request) -> Response:
        return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    async def api_status(_req: Request) -> Response:
        return JSONResponse(status_json(agent.status()))

    async def api_network(_req: Request) -> Response:
        return JSONResponse(network_view(agent))

    async def dashboard(_req: Request) -> Response:
        if not agent.config.role.is_sclerotium:
            return PlainTextResponse("the dashboard is served by Sclerotia", status_code=404)
        html = files("mycelium.node").joinpath("dashboard.html").read_text()
        return HTMLResponse(html)

    return Starlette(
        routes=[
            Route("/", dashboard),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/api/status", api_status),
            Route("/api/network", api_network),
        ]
    )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our task group: signals belong to the node runner, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def http_server(agent: Agent, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        build_app(agent), host=host, port=port, log_level="warning", lifespan="off", access_log=False
    )
    return _EmbeddedServer(config)
