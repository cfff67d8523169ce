"""Sclerotia in the Global DB: the master list entry, a liveness key bound to a lease, health.

Every Sclerotium (dedicated, or a Rhizomorph promoted to dynamic) writes its master-list record
(public key, certificate, addresses), keeps a liveness entry alive through a lease session, and
publishes a health score; it reads back the master list, who is alive and the trust scores for the
dashboard. A Global DB that cannot be reached is retried, never fatal: the network keeps serving
from its members' own views meanwhile.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

import spore
from meshnet import node_id_for
from mycelium.globaldb import (
    EtcdClient,
    EtcdConfig,
    GlobalDBError,
    HealthScore,
    KVStore,
    NetworkDB,
    SclerotiumRecord,
    Session,
    SQLiteStore,
)
from mycelium.node._enrol import SCLEROTIUM_RECORD
from mycelium.primary import GlobalDBPrimaryAuthority

if TYPE_CHECKING:
    from mycelium.node._agent import Agent


@contextlib.asynccontextmanager
async def open_store(url: str) -> AsyncIterator[KVStore]:
    """``sqlite:PATH`` (embedded, shared by the processes of one host) or ``etcd://h:p[,h:p]``."""
    if url.startswith("sqlite:"):
        async with SQLiteStore(Path(url.removeprefix("sqlite:"))) as sqlite:
            yield sqlite
    else:
        endpoints = tuple(url.removeprefix("etcd://").split(","))
        async with EtcdClient(EtcdConfig(endpoints=endpoints)) as etcd:
            yield etcd


async def _publish(agent: Agent, db: NetworkDB, session: Session) -> None:
    node_id = agent.credentials.node_id
    kind = "dedicated" if agent.role.value == "dedicated-sclerotium" else "dynamic"
    await db.sclerotia.put(
        SclerotiumRecord(
            node_id=node_id,
            public_key=agent.credentials.identity.public_key,
            certificate=agent.credentials.certificate.pem,
            kind=kind,
            addresses=(agent.mesh_address,),
        )
    )
    await db.announce_alive(session, node_id, agent.config.name.encode())
    agent.log.info("registered_in_globaldb", kind=kind)


async def _refresh(agent: Agent, db: NetworkDB) -> None:
    status = agent.status()
    await db.health.put(
        HealthScore(
            node_id=agent.credentials.node_id,
            score=max(0.0, 1.0 - status.capacity.cpu_load),
            checked_at=time.time(),
            detail=f"load {status.capacity.cpu_load:.2f}",
        )
    )
    view: dict[str, Any] = {
        "backend": agent.config.globaldb.split(":", 1)[0],
        "sclerotia": sorted((v.value.node_id, v.value.kind) for v in await db.sclerotia.list()),
        "alive": sorted(await db.alive()),
        "trust": {v.value.node_id: v.value.score for v in await db.trust.list()},
        "health": {v.value.node_id: v.value.score for v in await db.health.list()},
    }
    primary = agent.primary_view
    if primary is not None:
        view["primary"] = {
            "reachable": primary.reachable,
            "revision": primary.revision,
            "members": sorted(primary.members),
        }
    agent.db_view = view


def _primary_trust(agent: Agent) -> spore.NetworkTrust:
    return spore.NetworkTrust(
        agent.credentials.network_id,
        agent.credentials.trust.ca_public_key,
        node_id_for=node_id_for,
    )


async def _join_primary(agent: Agent, authority: GlobalDBPrimaryAuthority) -> None:
    """Publish this Sclerotium's countersigned record (if enrolment gave it one)."""
    path = agent.config.data_dir / SCLEROTIUM_RECORD
    if not path.exists():
        return  # a promoted (dynamic) Sclerotium: in the master list, not in the Primary Spore
    try:
        record = spore.decode_record(path.read_bytes())
    except spore.SporeError as exc:
        agent.log.warning("sclerotium_record_unreadable", error=str(exc))
        return
    await authority.put(record)


async def run_registration(agent: Agent, period: float = 2.0) -> None:
    """Register while this node is a Sclerotium and follow the Primary Spore; retry on errors."""
    while True:
        if not agent.role.is_sclerotium:
            await anyio.sleep(period)
            continue
        try:
            async with (
                open_store(agent.config.globaldb) as store,
                Session(store, ttl=10) as session,
                anyio.create_task_group() as tg,
            ):
                db = NetworkDB(store, agent.credentials.network_id)
                await _publish(agent, db, session)
                authority = GlobalDBPrimaryAuthority(store, agent.credentials.network_id)
                await _join_primary(agent, authority)
                view = spore.PrimaryView(_primary_trust(agent), time.time)
                agent.primary_view = view
                tg.start_soon(
                    spore.follow_primary, authority, view, agent.config.data_dir / "primary.snapshot"
                )
                while agent.role.is_sclerotium and not session.lost:
                    await _refresh(agent, db)
                    await anyio.sleep(period)
                tg.cancel_scope.cancel()
        except (GlobalDBError, spore.SporeError, OSError) as exc:
            agent.db_view = {"error": str(exc)}
            agent.log.warning("globaldb_unavailable", error=str(exc))
            await anyio.sleep(period * 2)
