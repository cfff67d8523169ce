"""A new backup seeds from several existing replicas in parallel, then Joins for the difference."""

from __future__ import annotations

import array

from dram import BackupCore, BackupState, BufferConfig, PrimaryCore, ReplicationConfig, Send

PS = 64
PAGES = 40
CFG = ReplicationConfig(
    buffer=BufferConfig(capacity_bytes=PS * PAGES, page_size=PS),
    min_window_bytes=PS * 64,
    max_window_bytes=PS * 64,
)


def test_seeding_splits_ranges_across_replicas_and_joins_with_a_small_diff() -> None:
    # two replicas holding the same image (as after replication), tags (1, page+1)
    image = bytearray(PAGES * PS)
    for p in range(PAGES):
        image[p * PS : (p + 1) * PS] = bytes([p + 1]) * PS
    replicas = {}
    for name in ("r1", "r2"):
        r = BackupCore(name, memoryview(bytearray(image)), PS, CFG)
        r.tags = array.array("Q", [(1 << 40) | (p + 1) for p in range(PAGES)])
        replicas[name] = r
    primary = PrimaryCore("p", PAGES, CFG, tags=array.array("Q", replicas["r1"].tags))
    fresh = BackupCore("new", memoryview(bytearray(PAGES * PS)), PS, CFG)
    served: dict[str, int] = {"r1": 0, "r2": 0}
    queue = fresh.start_seeding(["r1", "r2"], join="p", chunk_pages=8)
    joins = []
    while queue:
        a = queue.pop(0)
        assert isinstance(a, Send)
        if a.dest in replicas:
            served[a.dest] += 1
            for reply in replicas[a.dest].receive("new", a.frame, 0.0):
                assert isinstance(reply, Send)
                queue += fresh.receive(a.dest, reply.frame, 0.0)
        else:
            joins.append(a)
    assert served["r1"] > 0
    assert served["r2"] > 0  # both replicas served ranges
    assert bytes(fresh.image) == bytes(image)
    assert fresh.state is BackupState.FOLLOWING
    # the Join tells the primary the fresh replica already matches: nothing to resend
    (join,) = joins
    primary.connect("new", "new", 0.0)
    primary.receive("new", join.frame, 0.0)
    assert primary.lag("new", 0.0).bytes == 0
