"""Network-wide alert rules evaluated on every Sclerotium (R27.1-3), through obs.

A Sclerotium aggregates what it knows of the whole network (its member table, the capacities
peers report, the trust scores in the Global DB) into a private metric registry and evaluates
obs alert rules over it: a node down, a node whose trust fell below the floor, a node low on
disk. Firing and resolved events are logged; the active set is served to the dashboard.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import CollectorRegistry

import obs
from mycelium.node._members import DEAD

if TYPE_CHECKING:
    from mycelium.node._agent import Agent

TRUST_FLOOR = 0.3  # below BOINC-style neutral 0.5 by a clear margin: repeated dissent, not noise
DISK_LOW_BYTES = 1 << 30


class NetworkAlerts:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.registry = CollectorRegistry()
        m = obs.Metrics("app", registry=self.registry)
        self.down = m.gauge("member_down", "1 when this Sclerotium sees the node dead", labels=("node",))
        self.trust = m.gauge("node_trust", "The node's trust score in the Global DB", labels=("node",))
        self.disk = m.gauge("node_disk_free", "Free disk the node reports", unit="bytes", labels=("node",))
        self.evaluator = obs.AlertEvaluator(
            self.registry,
            [
                obs.AlertRule("node_down", "mycelium_app_member_down", ">", 0, severity="critical",
                              summary="a member stopped answering probes"),
                obs.AlertRule("trust_violation", "mycelium_app_node_trust", "<", TRUST_FLOOR,
                              summary="trust fell below the floor: repeated dissent or protocol faults"),
                obs.AlertRule("disk_low", "mycelium_app_node_disk_free_bytes", "<", DISK_LOW_BYTES, for_seconds=10,
                              summary="less than 1 GiB of free disk"),
            ],
        )  # fmt: skip
        self.log = obs.get_logger("mycelium.alerts").bind(observer=agent.config.name)

    def _update(self) -> None:
        agent = self.agent
        names = {r.node_id: r.name for r in agent.members.records.values()}
        for rec in agent.members.records.values():
            self.down.labels(node=rec.name).set(1.0 if rec.state == DEAD else 0.0)
        for node_id, score in (agent.db_view.get("trust") or {}).items():
            self.trust.labels(node=names.get(node_id, node_id)).set(float(score))
        for node_id, st in agent.peer_status.items():
            if st.capacity.disk_bytes:
                self.disk.labels(node=names.get(node_id, st.name)).set(float(st.capacity.disk_bytes))

    def evaluate(self, now: float) -> list[dict[str, Any]]:
        self._update()
        for event in self.evaluator.evaluate(now):
            labels = dict(event.labels)
            self.log.warning(
                "alert",
                rule=event.rule,
                state=event.state.value,
                node=labels.get("node", ""),
                value=event.value,
            )
        return [
            {
                "rule": e.rule,
                "node": dict(e.labels).get("node", ""),
                "state": e.state.value,
                "severity": e.severity,
                "since": e.active_since,
                "summary": e.summary,
            }
            for e in self.evaluator.active()
        ]


async def run_alerts(agent: Agent, period: float = 1.0) -> None:
    alerts = NetworkAlerts(agent)
    while True:
        if agent.role.is_sclerotium:
            agent.alerts = alerts.evaluate(time.time())
        await anyio.sleep(period)
