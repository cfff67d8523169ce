"""A batch must fit in one frame: backups refuse a pre-prepare above ``WireLimits.max_frame_bytes``,
and so would every primary after a view change, so the primary stops a batch short of it, a
request no batch can carry is dropped, and a client refuses to send one."""

from __future__ import annotations

from collections import deque

import pytest

import bftconsensus as b
from bftconsensus._wire import BATCH_OVERHEAD, Kind, decode_frame

MEMBERS = ("e0", "e1", "e2", "e3")
LIMITS = b.WireLimits(max_frame_bytes=4096)


def _run(world: dict[str, b.Ed25519Signer], keys: dict[str, bytes], clients: list[b.Client]) -> list[int]:
    """Deliver everything until quiet; return the byte size of every pre-prepare frame sent."""
    config = b.ReplicaConfig(MEMBERS, batch_delay=0)
    replicas = {m: b.Replica(world[m], keys, config, b.KeyValueStore(), limits=LIMITS) for m in MEMBERS}
    by_id = {c.signer.node_id: c for c in clients}
    queue: deque[tuple[str, b.Send]] = deque()
    sizes: list[int] = []
    for c in clients:
        queue.extend(
            (c.signer.node_id, a) for a in c.submit(b"put k " + b"v" * 1500) if isinstance(a, b.Send)
        )
    while queue:
        src, send = queue.popleft()
        if send.dst in replicas:
            if decode_frame(send.frame).kind == int(Kind.PRE_PREPARE) and send.dst == "e1":
                sizes.append(len(send.frame))
            out = replicas[send.dst].receive(src, send.frame)
            queue.extend((send.dst, a) for a in out if isinstance(a, b.Send))
        else:
            by_id[send.dst].receive(src, send.frame)
    return sizes


def test_a_batch_never_grows_past_the_frame_limit(
    world: dict[str, b.Ed25519Signer], keys: dict[str, bytes]
) -> None:
    names = ["client", "client2", "coord", "e4", "e5", "e6"]
    clients = [b.Client(world[n], keys, MEMBERS, limits=LIMITS) for n in names]
    sizes = _run(world, keys, clients)
    # the first request goes alone (nothing in flight); the five that waited (~1.7 KB each)
    # cannot share one 4 KB frame: backups would refuse it, and every next primary's too
    assert len(sizes) >= 4
    assert max(sizes) <= LIMITS.max_frame_bytes
    assert all(not c.busy for c in clients)  # every request executed and answered


def test_a_client_refuses_an_operation_no_batch_could_carry(
    world: dict[str, b.Ed25519Signer], keys: dict[str, bytes]
) -> None:
    client = b.Client(world["client"], keys, MEMBERS, limits=LIMITS)
    with pytest.raises(b.BftConsensusError, match=r"batch carries at most 3584"):
        client.submit(b"x" * (LIMITS.max_frame_bytes - BATCH_OVERHEAD))
    assert not client.busy  # nothing outstanding, the timestamp not spent
    assert client.timestamp == 0
    client.submit(b"small")
    assert client.timestamp == 1


def test_the_primary_drops_a_request_no_batch_could_carry(
    world: dict[str, b.Ed25519Signer], keys: dict[str, bytes]
) -> None:
    big = b.Client(world["client"], keys, MEMBERS)  # default limits: it sends what replicas cannot batch
    small = b.Client(world["client2"], keys, MEMBERS, limits=LIMITS)
    config = b.ReplicaConfig(MEMBERS)
    primary = b.Replica(world["e0"], keys, config, b.KeyValueStore(), limits=LIMITS)
    (send_big, _) = big.submit(b"x" * 3800)
    assert isinstance(send_big, b.Send)
    assert primary.receive("client", send_big.frame) == [b.SetTimer("view-change", 2.0)]  # held, not batched
    assert "client" not in primary.pending
    (send_small, _) = small.submit(b"put a 1")
    assert isinstance(send_small, b.Send)
    out = primary.receive("client2", send_small.frame)
    proposed = [
        a for a in out if isinstance(a, b.Send) and decode_frame(a.frame).kind == int(Kind.PRE_PREPARE)
    ]
    assert len(proposed) == 3  # the small request's batch went to the three backups
