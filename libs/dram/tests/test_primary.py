"""PrimaryCore: parallel connections, failover of in-flight pages, load balance, throttle actions."""

from __future__ import annotations

import array

from dram import (
    BackupCore,
    BufferConfig,
    CloseConnection,
    LinearCurve,
    PrimaryCore,
    ReadPages,
    ReplicationConfig,
    Send,
    SetPaused,
    SetThrottle,
    decode,
)
from dram._pb.dram.v1 import PageBatch

PS = 64
PAGES = 64
CFG = ReplicationConfig(
    buffer=BufferConfig(capacity_bytes=PS * 32, page_size=PS, curve=LinearCurve(0.5)),
    batch_pages=4,
    min_window_bytes=PS * 8,
    max_window_bytes=PS * 64,
    ack_timeout=1.0,
    max_timeouts=2,
)


def zero_tags() -> array.array[int]:
    """Both sides start as zeroed memory: no initial full sync needed (a fresh primary does one)."""
    return array.array("Q", bytes(8 * PAGES))


def data(v: int) -> bytes:
    return bytes([v]) * PS


def batches(actions: list[object], dest: str | None = None) -> list[Send]:
    return [
        a
        for a in actions
        if isinstance(a, Send)
        and (dest is None or a.dest == dest)
        and isinstance(decode(a.frame, CFG_LIMITS).message, PageBatch)
    ]


CFG_LIMITS = PrimaryCore("x", PAGES, CFG).limits


def joined(p: PrimaryCore, backup: BackupCore, conns: list[str], now: float = 0.0) -> None:
    """Connect and deliver the heartbeat -> Join handshake."""
    for c in conns:
        for a in p.connect(c, backup.node_id, now):
            assert isinstance(a, Send)
            for reply in backup.receive("p", a.frame, now):
                if isinstance(reply, Send):
                    p.receive(c, reply.frame, now)


def deliver(p: PrimaryCore, backup: BackupCore, sends: list[Send], now: float) -> list[object]:
    out: list[object] = []
    for s in sends:
        for reply in backup.receive("p", s.frame, now):
            if isinstance(reply, Send):
                out += p.receive(s.dest, reply.frame, now)
    return out


def test_pages_spread_over_parallel_connections_and_replicate() -> None:
    p = PrimaryCore("p", PAGES, CFG, tags=zero_tags())
    b = BackupCore("b1", memoryview(bytearray(PAGES * PS)), PS, CFG)
    joined(p, b, ["b1/0", "b1/1"])
    acts = p.pages_dirty([(i, data(i + 1)) for i in range(16)], now=0.1)
    sent = batches(acts)
    assert {s.dest for s in sent} == {"b1/0", "b1/1"}  # both windows used
    deliver(p, b, sent, 0.2)
    assert p.lag("b1", 0.2).bytes == 0
    assert all(b.image[i * PS] == i + 1 for i in range(16))


def test_pages_of_a_timed_out_connection_are_resent_on_the_others() -> None:
    p = PrimaryCore("p", PAGES, CFG, tags=zero_tags())
    b = BackupCore("b1", memoryview(bytearray(PAGES * PS)), PS, CFG)
    joined(p, b, ["fast", "dead"])
    sent = batches(p.pages_dirty([(i, data(9)) for i in range(16)], now=0.0))
    deliver(p, b, [s for s in sent if s.dest == "fast"], 0.1)  # "dead" never answers
    assert p.lag("b1", 0.1).bytes > 0
    acts = p.tick(1.5)  # past ack_timeout: dead's pages go back to the queue
    resent = batches(acts)
    assert resent
    deliver(p, b, [s for s in resent if s.dest == "fast"], 1.6)
    acts = p.tick(3.0)
    deliver(p, b, [s for s in batches(acts) if s.dest == "fast"], 3.1)
    assert any(isinstance(a, CloseConnection) and a.dest == "dead" for a in acts + p.tick(4.6))
    assert p.lag("b1", 5.0).bytes == 0
    assert all(b.image[i * PS] == 9 for i in range(16))


def test_throttle_rises_with_fill_and_pause_when_full() -> None:
    p = PrimaryCore("p", PAGES, CFG, tags=zero_tags())
    b = BackupCore("b1", memoryview(bytearray(PAGES * PS)), PS, CFG)
    joined(p, b, ["only"])
    pending: list[object] = p.pages_dirty([(i, data(1)) for i in range(24)], now=0.0)  # fill 0.75
    throttle = [a for a in pending if isinstance(a, SetThrottle)]
    assert throttle
    assert 0.4 < throttle[-1].fraction < 0.6
    more = p.pages_dirty([(i, data(2)) for i in range(24, 40)], now=0.0)  # over capacity
    assert SetPaused(True) in more
    pending += more
    seen: list[object] = []
    now = 0.0
    for _ in range(200):  # draining the buffer lifts the pause and the throttle; resync re-reads
        now += 0.01
        pending += p.tick(now)
        while pending:
            a = pending.pop(0)
            seen.append(a)
            if isinstance(a, Send) and batches([a]):
                pending += deliver(p, b, [a], now)
            elif isinstance(a, ReadPages):
                pending += p.pages_dirty([(q, data(2)) for q in a.pages], now)
        if p.lag("b1", now).bytes == 0:
            break
    assert SetPaused(False) in seen
    assert p.lag("b1", now).bytes == 0
    assert p.throttle == 0.0
    assert all(b.image[i * PS] == (1 if i < 24 else 2) for i in range(40))


def test_garbage_from_a_connection_closes_it() -> None:
    p = PrimaryCore("p", PAGES, CFG, tags=zero_tags())
    p.connect("c", "b1", 0.0)
    acts = p.receive("c", b"\xff" * 10, 0.0)
    assert any(isinstance(a, CloseConnection) for a in acts)
    assert p.connections() == []


def drive(p: PrimaryCore, b: BackupCore, actions: list[object], now: float) -> None:
    """Perform actions until quiet: deliver batches (and the sends their acks trigger), resync reads."""
    queue = list(actions)
    while queue:
        a = queue.pop(0)
        if isinstance(a, ReadPages):
            queue += p.pages_dirty([(q, data(q % 200 + 1)) for q in a.pages], now)
        elif isinstance(a, Send) and batches([a]):
            queue += deliver(p, b, [a], now)


def test_a_fresh_primary_copies_its_whole_region_to_a_new_backup() -> None:
    p = PrimaryCore("p", PAGES, CFG)  # default: existing content, unknown to any replica
    b = BackupCore("b1", memoryview(bytearray(PAGES * PS)), PS, CFG)
    joined(p, b, ["c"])
    assert p.lag("b1", 0.0).bytes == PAGES * PS
    now = 0.0
    for _ in range(50):
        now += 0.01
        drive(p, b, p.tick(now), now)
    assert p.lag("b1", now).bytes == 0
    assert all(b.image[q * PS] == q % 200 + 1 for q in range(PAGES))
