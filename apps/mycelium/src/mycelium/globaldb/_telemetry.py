"""Metrics and logs of the Global DB client (prometheus names ``mycelium_globaldb_*``).

Failovers and watch resumes are the events an operator needs to see: a steady stream of them
means a member is flapping or unreachable even though every request still succeeds.
"""

from __future__ import annotations

import obs

__all__ = ["FAILOVERS", "WATCH_RESUMES", "log"]

_metrics = obs.Metrics("globaldb")
FAILOVERS = _metrics.counter(
    "endpoint_failovers",
    "Times the etcd client left a member for the next endpoint, by reason",
    labels=("reason",),
)
WATCH_RESUMES = _metrics.counter("watch_resumes", "Watches reopened on a member from their next revision")
log = obs.get_logger("mycelium.globaldb")
