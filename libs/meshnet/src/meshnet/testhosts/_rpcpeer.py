"""A reference peer process for multi-homing and parallel-pull tests and benchmarks.

``python -m meshnet.testhosts._rpcpeer --network net.json --name s1 [--blob FILE] ...`` joins the
network saved in ``net.json`` (a fresh node identity), serves calls and byte ranges over meshnet's
authenticated transport, and prints ``READY <port> <node_id>`` once it listens. Calls reply
``<name>:<request>``; ``sleep:<seconds>`` sleeps first; with ``--hold``, calls starting with
``hold`` are never answered (a peer that dies mid-call in a test). ``--range-delay`` slows every
range; ``--corrupt-every N`` flips a byte in every Nth range (a lying peer); ``--uplink-mbps``
models a peer whose upload link carries at most that many MB/s (shared by its concurrent ranges).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from meshnet._identity import NodeIdentity
from meshnet._multihome import serve_calls
from meshnet._network import NetworkIdentity
from meshnet._pull import RANGE_MAGIC, range_handler
from meshnet._server import MeshServer
from meshnet._stream import FramedStream

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshnet.testhosts._rpcpeer")
    parser.add_argument("--network", required=True, help="NetworkIdentity file (NetworkIdentity.save)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--blob", help="file whose bytes are served as ranges")
    parser.add_argument("--hold", action="store_true", help="never answer calls starting with 'hold'")
    parser.add_argument("--range-delay", type=float, default=0.0)
    parser.add_argument("--corrupt-every", type=int, default=0)
    parser.add_argument(
        "--uplink-mbps", type=float, default=0.0, help="cap range bytes served, MB/s (0: no cap)"
    )
    args = parser.parse_args(argv)
    network = NetworkIdentity.load(args.network)
    creds = network.credentials_for(NodeIdentity.generate())
    blob = Path(args.blob).read_bytes() if args.blob else b""
    served = [0]
    uplink_free_at = [0.0]  # when the modelled uplink has sent everything queued so far

    async def read_range(offset: int, length: int) -> bytes:
        if args.range_delay:
            await anyio.sleep(args.range_delay)
        if args.uplink_mbps > 0:
            start = max(anyio.current_time(), uplink_free_at[0])
            uplink_free_at[0] = start + length / (args.uplink_mbps * 1e6)
            await anyio.sleep_until(uplink_free_at[0])
        data = blob[offset : offset + length]
        served[0] += 1
        if args.corrupt_every and served[0] % args.corrupt_every == 0:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    ranges = range_handler(read_range, size=len(blob))
    name: bytes = str(args.name).encode()

    async def handle(request: bytes) -> bytes:
        if request.startswith(RANGE_MAGIC):
            return await ranges(request)
        if args.hold and request.startswith(b"hold"):
            await anyio.sleep_forever()
        if request.startswith(b"sleep:"):
            await anyio.sleep(float(request[6:16]))
        return name + b":" + request

    async def on_stream(stream: FramedStream) -> None:
        await serve_calls(stream, handle)

    async def run() -> None:
        async with MeshServer(creds, on_stream, host=args.host, port=args.port) as server:
            print(f"READY {server.port} {creds.node_id}", flush=True)
            await anyio.sleep_forever()

    anyio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
