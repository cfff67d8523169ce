"""Replica metrics follow the replica's state (a single-replica cluster orders on its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

import bftconsensus as b


def test_metrics_count_executed_requests_and_report_sequence(world, keys) -> None:
    registry = CollectorRegistry()
    metrics = b.ReplicaMetrics(registry)
    replica = b.Replica(world["e0"], keys, b.ReplicaConfig(("e0",), checkpoint_interval=2), b.KeyValueStore())
    client = b.Client(world["client"], keys, ["e0"])
    for i in range(3):
        (send, *_) = client.submit(b"put k %d" % i)
        assert isinstance(send, b.Send)
        for a in replica.receive("client", send.frame):
            if isinstance(a, b.Send) and a.dst == "client":
                client.receive("e0", a.frame)
        assert client.result == b"ok"
        metrics.observe(replica)
    labels = {"replica": "e0"}
    assert registry.get_sample_value("mycelium_bftconsensus_replica_requests_executed_total", labels) == 3
    assert registry.get_sample_value("mycelium_bftconsensus_replica_executed_seq", labels) == 3
    assert registry.get_sample_value("mycelium_bftconsensus_replica_stable_checkpoint_seq", labels) == 2
    assert registry.get_sample_value("mycelium_bftconsensus_replica_members_count", labels) == 1
