"""The agent's member table: who exists, how to reach them, and what this node sees of them.

The table is pure (time is passed in): the agent's probe loop reports successes and failures and
reads back states. A member is *alive* while probes succeed, *suspect* after a failed probe, and
*dead* once nothing has succeeded for ``dead_after`` seconds. Members learned from a peer's list
start as suspect until this node reaches them itself, so a node never vouches for what it has not
seen ("who can see whom" stays first-hand, which the split-brain view needs).
"""

from __future__ import annotations

import attrs

ALIVE, SUSPECT, DEAD = "alive", "suspect", "dead"


@attrs.define
class MemberRecord:
    node_id: str
    name: str
    role: str
    mesh_address: str
    http_address: str
    state: str = SUSPECT
    since: float = 0.0
    last_seen: float = 0.0
    rtt: float = float("inf")


@attrs.define
class MemberTable:
    self_id: str
    dead_after: float
    records: dict[str, MemberRecord] = attrs.field(factory=dict)

    def learn(self, rec: MemberRecord, now: float) -> bool:
        """Add a member heard of second-hand; returns True when it was new."""
        if rec.node_id == self.self_id or rec.node_id in self.records:
            known = self.records.get(rec.node_id)
            if known is not None and rec.mesh_address and known.mesh_address != rec.mesh_address:
                known.mesh_address = rec.mesh_address  # moved (restart on another port)
            return False
        rec.state, rec.since, rec.last_seen = SUSPECT, now, now
        self.records[rec.node_id] = rec
        return True

    def succeeded(self, rec: MemberRecord, now: float, rtt: float) -> None:
        known = self.records.setdefault(rec.node_id, rec)
        known.name, known.role = rec.name, rec.role
        known.mesh_address, known.http_address = rec.mesh_address, rec.http_address
        if known.state != ALIVE:
            known.state, known.since = ALIVE, now
        known.last_seen, known.rtt = now, rtt

    def failed(self, node_id: str, now: float) -> None:
        known = self.records.get(node_id)
        if known is None:
            return
        new = DEAD if now - known.last_seen >= self.dead_after else SUSPECT
        if known.state == DEAD:
            return
        if new != known.state:
            known.state, known.since = new, now
        known.rtt = float("inf")

    def alive(self, role_prefix: str = "") -> list[MemberRecord]:
        return sorted(
            (r for r in self.records.values() if r.state == ALIVE and r.role.startswith(role_prefix)),
            key=lambda r: (r.rtt, r.node_id),
        )

    def counts(self) -> dict[str, int]:
        out = {ALIVE: 0, SUSPECT: 0, DEAD: 0}
        for r in self.records.values():
            out[r.state] += 1
        return out
