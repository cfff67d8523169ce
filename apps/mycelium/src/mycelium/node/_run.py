"""Run one node until cancelled: the agent plus its HTTP server, in one task group."""

from __future__ import annotations

import json
import signal

import anyio

import obs
from mycelium.node._agent import Agent
from mycelium.node._config import NodeConfig
from mycelium.node._enrol import load_credentials
from mycelium.node._http import http_server


async def run_node(config: NodeConfig, announce: bool = True) -> None:
    """Start the node; print one JSON line with its addresses once it listens; run until SIGTERM/SIGINT."""
    credentials = load_credentials(config.data_dir)
    async with Agent(config, credentials) as agent, anyio.create_task_group() as tg:
        server = http_server(agent, config.host, config.http_port)
        agent.http_port = config.http_port
        tg.start_soon(server.serve)
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await anyio.sleep(0.02)
        if not agent.http_port:
            agent.http_port = server.servers[0].sockets[0].getsockname()[1]
        if announce:
            line = {"node": config.name, "mesh": agent.mesh_address, "http": agent.http_address}
            print(json.dumps(line), flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _sig in signals:
                obs.get_logger("mycelium.agent").info("shutdown", node=config.name)
                server.should_exit = True
                tg.cancel_scope.cancel()
                break
