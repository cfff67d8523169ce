"""``python -m blockstore``: run a storage node, or serve a volume over NBD.

    python -m blockstore node --dir /var/lib/blockstore --port 7400
    python -m blockstore serve --name disk --size 1G --node a=10.0.0.1:7400 --node b=... --port 10809
    python -m blockstore serve --name disk --size 1G --local /tmp/disk --replicas 1
    python -m blockstore serve --name disk --size 1G --local-node a=/var/lib/blockstore/a --node b=...

Each prints one JSON line with the bound port(s) once it is ready, then serves until killed.
Bad arguments print one line naming the argument and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from meshnet import MeshCredentials, MeshnetError, NetworkIdentity, NodeIdentity

from ._crypto import Keyring
from ._errors import BlockstoreError, ConfigError
from ._nbd_server import serve_nbd
from ._node import serve_storage_node
from ._placement import StorageNodeInfo
from ._remote import RemoteReplica
from ._replica import LocalReplica, Replica
from ._spec import VolumeSpec, WritePolicy
from ._volume import Volume

__all__ = ["main", "parse_size"]

_GC_THRESHOLDS = (50_000, 20, 100)
_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3
_SIZE = re.compile(r"(\d+)([KMGT]?)(i?B?)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``4096``, ``64K``, ``16M``, ``1G`` (binary multiples)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected a number with optional K/M/G/T suffix")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def _node_arg(text: str) -> tuple[str, str, int, str]:
    m = re.fullmatch(r"([^=]+)=([^:]+):(\d+)(?:@(.+))?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--node {text!r}: expected id=host:port[@failure-domain]")
    return m.group(1), m.group(2), int(m.group(3)), m.group(4) or ""


def _local_node_arg(text: str) -> tuple[str, str]:
    m = re.fullmatch(r"([^=]+)=(.+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--local-node {text!r}: expected id=directory")
    return m.group(1), m.group(2)


def _backend_options() -> dict[str, bool]:
    """uvloop when installed (``pip install mycelium-blockstore[fast]``): about half the per-request
    event-loop cost of the pure-Python asyncio loop."""
    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def _ready(**ports: int) -> None:
    _tune_malloc()
    _tune_gc()
    print(json.dumps(ports), flush=True)


def _tune_malloc() -> None:
    """Keep freed request buffers in the process instead of returning them to the kernel.

    Block payloads of 128 KiB and more are allocated and freed per request; glibc serves those
    from fresh mmaps or trims the heap after them, so every request paid page faults on new
    memory (over 10% of the front end's CPU under 128 KiB writes). Fixed thresholds keep them in
    the heap and the heap untrimmed; the process keeps its peak footprint. No-op without glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def _tune_gc() -> None:
    """Keep the cyclic collector off the I/O path of a serving process.

    Every request allocates a few short-lived objects, which made the default thresholds run a
    young-generation collection every few hundred requests and a full one (traversing everything
    the process holds) often enough to take ~15-20% of the front end's CPU under 4k I/O. Objects
    alive once the process is ready (modules, the volume, its placement) are frozen out of every
    collection; the young generation is collected less often. Reference cycles are still
    collected, just in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def _credentials(args: argparse.Namespace) -> MeshCredentials | None:
    """This process's meshnet credentials: a fresh node key enrolled by the network key file."""
    if not args.network_key:
        print(
            "blockstore: no --network-key: replication runs over plain TCP (one host only)", file=sys.stderr
        )
        return None
    network = NetworkIdentity.load(args.network_key)
    return network.credentials_for(NodeIdentity.generate())


async def _run_node(args: argparse.Namespace) -> None:
    async with serve_storage_node(Path(args.dir), args.host, args.port, _credentials(args)) as node:
        _ready(port=node.port)
        await anyio.sleep_forever()


async def _run_serve(args: argparse.Namespace) -> None:
    spec = VolumeSpec(
        name=args.name,
        size=args.size,
        chunk_size=args.chunk_size,
        replicas=args.replicas,
        policy=WritePolicy(ack=args.ack, min_replicas=min(args.min_replicas, args.replicas)),
    )
    credentials = _credentials(args) if (args.node or args.nbd_tls) else None
    tls = None
    if args.nbd_tls:
        if credentials is None:
            raise ConfigError(
                "--nbd-tls: needs --network-key (clients present a certificate of that network)"
            )
        tls = credentials.ssl_context(server_side=True)
    keyring = None
    if args.key_file:
        keyring = Keyring({1: await anyio.Path(args.key_file).read_bytes()}, 1)
    async with contextlib.AsyncExitStack() as stack:
        replicas: dict[str, Replica] = {}
        nodes: list[StorageNodeInfo] = []
        if args.local:
            for i in range(args.replicas):
                node_id = f"local{i}"
                replicas[node_id] = LocalReplica(
                    node_id, Path(args.local) / node_id, spec.size, spec.block_size, spec.chunk_size
                )
                nodes.append(StorageNodeInfo(node_id))
        for node_id, directory in args.local_node:
            if node_id in replicas:
                raise ConfigError(f"--local-node {node_id}: node id given twice")
            replicas[node_id] = LocalReplica(
                node_id, Path(directory), spec.size, spec.block_size, spec.chunk_size
            )
            nodes.append(StorageNodeInfo(node_id))
        for node_id, host, port, domain in args.node:
            if node_id in replicas:
                raise ConfigError(f"--node {node_id}: node id given twice")
            replicas[node_id] = await stack.enter_async_context(
                RemoteReplica(node_id, host, port, spec, credentials=credentials)
            )
            nodes.append(StorageNodeInfo(node_id, domain))
        volume = await stack.enter_async_context(Volume(spec, replicas, nodes, keyring=keyring))
        server = await stack.enter_async_context(
            serve_nbd({spec.name: volume}, args.host, args.port, tls=tls)
        )
        _ready(port=server.port)
        await anyio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blockstore", description="blockstore storage node / NBD server"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run a storage node")
    node.add_argument("--dir", required=True, help="directory holding this node's replicas")
    node.add_argument("--host", default="127.0.0.1")
    node.add_argument("--port", type=int, default=0)
    node.add_argument("--network-key", help="meshnet network identity file: authenticate replication")
    serve = sub.add_parser("serve", help="serve one volume over NBD")
    serve.add_argument("--name", default="disk")
    serve.add_argument("--size", type=parse_size, required=True)
    serve.add_argument("--chunk-size", type=parse_size, default=4 << 20)
    serve.add_argument("--replicas", type=int, default=3)
    serve.add_argument("--min-replicas", type=int, default=2)
    serve.add_argument("--ack", choices=("all", "quorum"), default="all")
    serve.add_argument("--node", type=_node_arg, action="append", default=[])
    serve.add_argument("--local", help="keep replicas in this local directory instead of on nodes")
    serve.add_argument(
        "--local-node",
        type=_local_node_arg,
        action="append",
        default=[],
        help="id=DIR: one replica in this process, placed like a storage node with that id "
        "(a host that runs both; reads of its chunks are served locally)",
    )
    serve.add_argument("--key-file", help="32-byte AES-256 key: encrypt the volume at rest")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--network-key", help="meshnet network identity file: authenticate replication")
    serve.add_argument(
        "--nbd-tls", action="store_true", help="require NBD STARTTLS with network certificates"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "node":
            anyio.run(_run_node, args, backend_options=_backend_options())
        else:
            if not args.local and not args.node and not args.local_node:
                parser.error("serve: give --local DIR, --local-node id=DIR or --node id=host:port")
            anyio.run(_run_serve, args, backend_options=_backend_options())
    except (BlockstoreError, MeshnetError, OSError) as exc:
        print(f"blockstore: {exc}", file=sys.stderr)
        return 2
    except ExceptionGroup as group:  # errors raised inside a task group arrive wrapped
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if not isinstance(leaf, BlockstoreError | MeshnetError | OSError):
            raise
        print(f"blockstore: {leaf}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
