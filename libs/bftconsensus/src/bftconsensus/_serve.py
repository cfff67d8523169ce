"""``python -m bftconsensus replica``: run one PBFT replica process from a cluster file.

The cluster file (JSON) names every replica with its address and public key, the clients allowed
to submit, the administrators allowed to reconfigure, and optional ReplicaConfig fields::

    {"replicas": {"<node id>": {"host": "127.0.0.1", "port": 7001, "public_key": "<hex>"}, ...},
     "clients": {"<node id>": "<hex public key>", ...},
     "admins": ["<client node id>"],
     "config": {"checkpoint_interval": 128, "batch_size": 64}}

The node's key is a meshnet ``NodeIdentity`` PEM file; the network file is a meshnet
``NetworkIdentity`` (this local-setup mode enrols the node itself; production nodes get a
certificate from their network's administrator instead). The replica serves a KeyValueStore.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

import obs
from bftconsensus._crypto import Ed25519Signer
from bftconsensus._driver import ReplicaService
from bftconsensus._errors import BftConsensusError, ConfigError
from bftconsensus._replica import Replica
from bftconsensus._smr import KeyValueStore, ReplicaConfig
from meshnet import MeshnetError, NetworkIdentity, NodeIdentity

__all__ = ["main", "load_cluster"]

_CONFIG_FIELDS = {
    "checkpoint_interval",
    "watermark_window",
    "batch_size",
    "max_inflight",
    "batch_delay",
    "view_change_timeout",
    "state_retry",
    "sign_all_messages",
    "reply_all",
    "check_all_requests",
}


def load_cluster(path: Path) -> tuple[dict[str, tuple[str, int]], dict[str, bytes], ReplicaConfig]:
    """(addresses, key directory, config) from a cluster file; ConfigError names what is wrong."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cluster file {str(path)!r} is not readable JSON: {exc}") from None
    try:
        replicas = doc["replicas"]
        addresses = {n: (str(r["host"]), int(r["port"])) for n, r in replicas.items()}
        keys = {n: bytes.fromhex(r["public_key"]) for n, r in replicas.items()}
        keys.update({n: bytes.fromhex(k) for n, k in doc.get("clients", {}).items()})
        options = doc.get("config", {})
        unknown = set(options) - _CONFIG_FIELDS
        if unknown:
            raise ConfigError(
                f"cluster file config has unknown fields {sorted(unknown)}; valid: {sorted(_CONFIG_FIELDS)}"
            )
        config = ReplicaConfig(tuple(replicas), admins=frozenset(doc.get("admins", [])), **options)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"cluster file {str(path)!r} is malformed ({type(exc).__name__}: {exc}); expected "
            '{"replicas": {"<id>": {"host", "port", "public_key"}}, "clients": {...}}'
        ) from None
    return addresses, keys, config


async def _run_replica(args: argparse.Namespace) -> None:
    addresses, keys, config = load_cluster(Path(args.cluster))
    ident = NodeIdentity.load(args.key)
    if ident.node_id not in addresses:
        raise ConfigError(f"this node ({ident.node_id}) is not listed under replicas in {args.cluster}")
    creds = NetworkIdentity.load(args.network).credentials_for(ident)
    replica = Replica(
        Ed25519Signer.from_identity(ident), keys, config, KeyValueStore(), clients=set(keys) - set(addresses)
    )
    host, port = addresses[ident.node_id]
    async with ReplicaService(replica, creds, addresses, host=host, port=port) as service:
        gc.collect()
        gc.freeze()  # what the process holds once ready stays out of every later collection
        print(f"ready {ident.node_id} {service.port}", flush=True)
        await anyio.sleep_forever()


def backend_options() -> dict[str, bool]:
    """uvloop when installed (``pip install mycelium-bftconsensus[fast]``).

    A replica spends most of its CPU in the event loop (one wake-up per frame per peer), and
    uvloop roughly halves that cost compared with the pure-Python asyncio loop.
    """
    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bftconsensus", description="Run bftconsensus processes.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("replica", help="run one PBFT replica serving a key-value store")
    rep.add_argument("--cluster", required=True, help="cluster JSON file")
    rep.add_argument("--key", required=True, help="this node's NodeIdentity PEM file (mode 0600)")
    rep.add_argument("--network", required=True, help="NetworkIdentity file used to enrol this node")
    args = parser.parse_args(argv)
    obs.configure_logging()  # JSON lines on stderr: view changes and the like
    try:
        anyio.run(_run_replica, args, backend_options=backend_options())
    except (BftConsensusError, MeshnetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the listening port is taken
        print(f"error: {exc.strerror or exc} ({args.cluster})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
