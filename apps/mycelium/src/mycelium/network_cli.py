"""`mycelium network create | show | enrol`: founding a network and admitting nodes (R13.1-2).

``create`` makes the network identity (CA key + isolation key, kept by the founder, mode 0600),
the public trust file every member needs, and the Master Seed Spore: a record signed by the
network key naming the entry points a new node contacts first. ``enrol`` is the founder's act of
admitting a node (its key, a certificate signed by the network, and for a Sclerotium its
countersigned spore record). A node started with ``--seed-file`` checks the seed against its
trust file (same network, signature by the network key, not expired) before it trusts the
entry points in it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import spore
from meshnet import MeshnetError, NetworkIdentity, NetworkTrust
from mycelium._errors import CLIError, MyceliumError
from mycelium.node._config import parse_address
from mycelium.node._enrol import enrol
from mycelium.node._roles import Role

NETWORK_KEY, TRUST_FILE, MASTER_SEED = "network.key", "trust.json", "master.seed"
SEED_TTL = 365 * 86400.0


class SeedError(MyceliumError):
    """A seed spore that must not be trusted: wrong network, bad signature, expired or unreadable."""


def load_master_seed(seed_path: Path, trust: NetworkTrust, now: float | None = None) -> spore.SeedSpore:
    """Decode and verify a Master Seed Spore against the network the node already trusts."""
    try:
        seed = spore.decode_seed(seed_path.read_bytes())
    except OSError as exc:
        raise SeedError(f"cannot read the seed spore {seed_path}: {exc.strerror}") from None
    except spore.SporeError as exc:
        raise SeedError(f"{seed_path} is not a seed spore: {exc}") from None
    if seed.network_id != trust.network_id:
        raise SeedError(
            f"{seed_path} is for network {seed.network_id}, but this node belongs to {trust.network_id}"
        )
    if not seed.is_master:
        raise SeedError(
            f"{seed_path} is the Service Seed Spore of {seed.service!r}, not the Master Seed Spore"
        )
    if not seed.verify(trust.ca_public_key, time.time() if now is None else now):
        raise SeedError(
            f"{seed_path} is expired or not signed by network {trust.network_id}; refusing its entry points"
        )
    return seed


def register(sub: argparse._SubParsersAction[Any]) -> None:
    net = sub.add_parser("network", help="create a network, show its seed, enrol nodes")
    net_sub = net.add_subparsers(dest="network_command", metavar="COMMAND", required=True)
    c = net_sub.add_parser("create", help="create a network identity and its Master Seed Spore")
    c.add_argument(
        "--dir", type=Path, required=True, help="directory for network.key, trust.json, master.seed"
    )
    c.add_argument("--name", default="mycelium", help="a human name for the network")
    c.add_argument(
        "--entry-point", action="append", default=[], metavar="HOST:PORT", help="a first Sclerotium"
    )
    c.set_defaults(func=_cmd_create)
    s = net_sub.add_parser("show", help="verify and show a network's Master Seed Spore")
    s.add_argument("--dir", type=Path, required=True)
    s.set_defaults(func=_cmd_show)
    e = net_sub.add_parser("enrol", help="admit a node: key, certificate, trust (the founder runs this)")
    e.add_argument("--dir", type=Path, required=True, help="the network directory (holds network.key)")
    e.add_argument("--node-dir", type=Path, required=True, help="where the node's files go")
    e.add_argument("--role", default="rhizomorph")
    e.add_argument("--address", default="", metavar="HOST:PORT", help="the node's mesh address (Sclerotia)")
    e.set_defaults(func=_cmd_enrol)


def _load_network(directory: Path) -> NetworkIdentity:
    try:
        return NetworkIdentity.load(directory / NETWORK_KEY)
    except MeshnetError as exc:
        raise CLIError(f"cannot load the network identity in {directory}: {exc}") from None


def _cmd_create(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if (directory / NETWORK_KEY).exists():
        raise CLIError(
            f"{directory / NETWORK_KEY} exists: a network already lives there (refusing to replace it)"
        )
    for ep in args.entry_point:
        parse_address(ep, "--entry-point")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    network = NetworkIdentity.generate(args.name)
    network.save(directory / NETWORK_KEY)
    network.trust().save(directory / TRUST_FILE)
    seed = spore.build_seed(
        network,
        network_id=network.network_id,
        entry_points=tuple(args.entry_point),
        issued_at=time.time(),
        ttl=SEED_TTL,
    )
    (directory / MASTER_SEED).write_bytes(spore.encode_seed(seed))
    result = {
        "network_id": network.network_id,
        "name": args.name,
        "files": {
            "network_key": str(directory / NETWORK_KEY),
            "trust": str(directory / TRUST_FILE),
            "master_seed": str(directory / MASTER_SEED),
        },
        "entry_points": list(args.entry_point),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"created network {network.network_id} ({args.name}) in {directory}")
        print(f"  keep {NETWORK_KEY} secret (mode 0600); give members {TRUST_FILE} and {MASTER_SEED}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        trust = NetworkTrust.load(args.dir / TRUST_FILE)
    except MeshnetError as exc:
        raise CLIError(f"cannot load {args.dir / TRUST_FILE}: {exc}") from None
    seed = load_master_seed(args.dir / MASTER_SEED, trust)
    info = {
        "network_id": seed.network_id,
        "entry_points": list(seed.entry_points),
        "issued_at": seed.issued_at_ms / 1000,
        "expires_at": seed.expires_at_ms / 1000,
        "signature": "valid",
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"Master Seed Spore of network {seed.network_id}: signature valid")
        print(f"  entry points: {', '.join(seed.entry_points) or '(none: first node founds the network)'}")
        print(f"  expires: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(seed.expires_at_ms / 1000))}")
    return 0


def _cmd_enrol(args: argparse.Namespace) -> int:
    network = _load_network(args.dir)
    role = Role.parse(args.role)
    if args.address:
        parse_address(args.address, "--address")
    if (args.node_dir / "node.key").exists():
        raise CLIError(f"{args.node_dir} already holds a node key; use another directory")
    identity = enrol(network, args.node_dir, role.value, args.address)
    if args.json:
        print(json.dumps({"node_id": identity.node_id, "role": role.value, "dir": str(args.node_dir)}))
    else:
        print(f"enrolled node {identity.node_id} as {role.label} in {args.node_dir}")
    return 0
