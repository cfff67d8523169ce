"""`mycelium node start`: run one node agent in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

import obs
from mycelium.node._config import NodeConfig
from mycelium.node._roles import Role
from mycelium.node._run import run_node


def register(sub: argparse._SubParsersAction[Any]) -> None:
    node = sub.add_parser("node", help="run a node agent")
    node_sub = node.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    s = node_sub.add_parser("start", help="start a node in the foreground (Ctrl-C stops it)")
    s.add_argument("--name", required=True, help="a human name for the node")
    s.add_argument(
        "--role",
        default="dedicated-sclerotium",
        help="dedicated-sclerotium, dynamic-sclerotium, rhizomorph or hypha",
    )
    s.add_argument("--data-dir", type=Path, required=True, help="holds node.key, node.crt and trust.json")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--mesh-port", type=int, default=0, help="meshnet port (0: any free port)")
    s.add_argument("--http-port", type=int, default=0, help="status/dashboard port (0: any free port)")
    s.add_argument(
        "--service-port", type=int, default=0, help="Sclerotia: client call port (0: any free port)"
    )
    s.add_argument(
        "--gossip-port", type=int, default=0, help="Rhizomorphs/Hyphae: Latent Spore port (0: any)"
    )
    s.add_argument("--seed", action="append", default=[], metavar="HOST:PORT", help="a node to join through")
    s.add_argument(
        "--seed-file",
        type=Path,
        help="a Master Seed Spore: verified against trust.json, then its entry points are used",
    )
    s.add_argument("--globaldb", default="", help="sqlite:PATH or etcd://HOST:PORT[,HOST:PORT]")
    s.add_argument("--log-level", default="INFO")
    s.set_defaults(func=_cmd_start)


def _cmd_start(args: argparse.Namespace) -> int:
    obs.configure_logging(args.log_level)
    seeds = list(args.seed)
    if args.seed_file is not None:
        from meshnet import NetworkTrust
        from mycelium.network_cli import load_master_seed

        trust = NetworkTrust.load(args.data_dir / "trust.json")
        master = load_master_seed(args.seed_file, trust)
        seeds += [ep for ep in master.entry_points if ep not in seeds]
    config = NodeConfig(
        name=args.name,
        role=Role.parse(args.role),
        data_dir=args.data_dir,
        host=args.host,
        mesh_port=args.mesh_port,
        http_port=args.http_port,
        service_port=args.service_port,
        gossip_port=args.gossip_port,
        seeds=tuple(seeds),
        globaldb=args.globaldb,
    )
    anyio.run(run_node, config)
    return 0
