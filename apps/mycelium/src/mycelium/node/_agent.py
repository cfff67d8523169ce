"""The node agent: the minimal core every node runs (R1.2).

It holds the node's identity, accepts authenticated meshnet connections, keeps the member table
fresh by probing peers, serves its status (and, on Sclerotia, the dashboard) over HTTP, and on a
Hypha keeps doing work through the best reachable Sclerotium, failing over at once when that one
goes away. Advanced management runs as services inside the network and is not the agent's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import betterproto

import obs
from meshnet import FramedStream, MeshCredentials, MeshnetError, MeshServer, connect, free_port
from mycelium._errors import MyceliumError
from mycelium.node._alerting import run_alerts
from mycelium.node._config import NodeConfig
from mycelium.node._latent import run_latent
from mycelium.node._members import ALIVE, MemberRecord, MemberTable
from mycelium.node._pb.agent.v1 import Capacity as PbCapacity
from mycelium.node._pb.agent.v1 import NodeStatus, Request, Response, RoleChange
from mycelium.node._resources import measure
from mycelium.node._roles import Capacity, Member, PlacementPolicy, Role
from mycelium.node._service import run_hypha, serve_work
from mycelium.node._wire import (
    AgentDecodeError,
    decode_request,
    decode_response,
    record_from_pb,
    record_to_pb,
)
from spore import LatentSpore, PrimaryView

log = obs.get_logger("mycelium.agent")
_PEER_ERRORS = (
    OSError,
    TimeoutError,
    MeshnetError,
    AgentDecodeError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)
_metrics = obs.Metrics("app")
_members_gauge = _metrics.gauge(
    "members", "Members of the network by state, as this node sees them", labels=("state",)
)


class _Peer:
    """One cached connection to a peer; requests on it are strictly sequential."""

    def __init__(self, stream: FramedStream) -> None:
        self.stream = stream
        self.lock = anyio.Lock()
        self.next_id = 1

    async def call(self, req: Request, deadline: float) -> Response:
        async with self.lock:
            req.id = self.next_id
            self.next_id += 1
            with anyio.fail_after(deadline):
                await self.stream.send(bytes(req))
                resp = decode_response(await self.stream.receive())
            if resp.id != req.id:
                raise AgentDecodeError(f"response id {resp.id} does not answer request {req.id}")
            return resp


class Agent:
    def __init__(
        self, config: NodeConfig, credentials: MeshCredentials, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.clock = clock
        self.started_at = clock()
        self.members = MemberTable(credentials.node_id, config.dead_after)
        self.peer_status: dict[str, NodeStatus] = {}
        self.work_done = 0
        self.serving_via = ""
        self._peers: dict[str, _Peer] = {}
        self._server: MeshServer | None = None
        self._service: MeshServer | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.http_port = config.http_port
        self.role = config.role
        self.policy = PlacementPolicy()
        self.decisions: list[str] = []
        self.db_view: dict[str, Any] = {}
        self.primary_view: PrimaryView | None = None
        self.latent: LatentSpore | None = None
        self.alerts: list[dict[str, Any]] | None = None
        self.gossip_port = 0
        self.ready = anyio.Event()
        self.log = log.bind(node=config.name, node_id=credentials.node_id, role=config.role.value)

    # -- lifetime ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        # Every listener is bound before any task starts, so status() (read by the probe loop,
        # the HTTP face and the registry from their first step) always has all its addresses.
        self._server = MeshServer(
            self.credentials, self._serve, host=self.config.host, port=self.config.mesh_port
        )
        await self._server.__aenter__()
        if self.config.role is not Role.HYPHA:
            self._service = MeshServer(
                self.credentials,
                serve_work(self),
                host=self.config.host,
                port=self.config.service_port,
            )
            await self._service.__aenter__()
        if self.config.role in (Role.HYPHA, Role.RHIZOMORPH):
            self.gossip_port = self.config.gossip_port or free_port(self.config.host)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._probe_loop)
        if self.gossip_port:
            self._tg.start_soon(run_latent, self, self.gossip_port)
        if self.config.role is Role.HYPHA:
            self._tg.start_soon(run_hypha, self)
        else:
            self._tg.start_soon(self._placement_loop)
            self._tg.start_soon(run_alerts, self)
            if self.config.globaldb:
                from mycelium.node._registry import run_registration

                self._tg.start_soon(run_registration, self)
        self.log.info("agent_started", mesh_port=self.mesh_port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        assert self._server is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(et, e, tb)
        for peer in list(self._peers.values()):
            with anyio.CancelScope(shield=True):
                await peer.stream.aclose()
        if self._service is not None:
            await self._service.__aexit__(et, e, tb)
        await self._server.__aexit__(et, e, tb)

    @property
    def mesh_port(self) -> int:
        assert self._server is not None
        return self._server.port

    @property
    def mesh_address(self) -> str:
        return f"{self.config.host}:{self.mesh_port}"

    @property
    def http_address(self) -> str:
        return f"{self.config.host}:{self.http_port}" if self.http_port else ""

    # -- status ------------------------------------------------------------------------------
    def status(self) -> NodeStatus:
        cap = measure(self.config.data_dir)
        me = MemberRecord(
            self.credentials.node_id,
            self.config.name,
            self.role.value,
            self.mesh_address,
            self.http_address,
        )
        me.state, me.since = ALIVE, self.started_at
        return NodeStatus(
            node_id=self.credentials.node_id,
            name=self.config.name,
            role=self.role.value,
            network_id=self.credentials.network_id,
            capacity=PbCapacity(
                cpus=cap.cpus,
                memory_bytes=cap.memory_bytes,
                disk_bytes=cap.disk_bytes,
                bandwidth_bps=cap.bandwidth_bps,
                cpu_load=cap.load,
            ),
            members=[record_to_pb(me)] + [record_to_pb(r) for r in self.members.records.values()],
            started_at=self.started_at,
            mesh_address=self.mesh_address,
            http_address=self.http_address,
            work_done=self.work_done,
            serving_via=self.serving_via,
            service_address=f"{self.config.host}:{self._service.port}" if self._service is not None else "",
            gossip_address=f"{self.config.host}:{self.gossip_port}" if self.gossip_port else "",
            latent_alive=len(self.latent.alive()) if self.latent is not None else 0,
        )

    # -- serving -----------------------------------------------------------------------------
    async def _serve(self, stream: FramedStream) -> None:
        try:
            async for frame in stream:
                try:
                    req = decode_request(frame)
                except AgentDecodeError as exc:
                    self.log.warning("bad_request", peer=stream.peer.node_id, error=str(exc))
                    return
                await stream.send(bytes(self._answer(req, stream.peer.node_id)))
        except (MeshnetError, anyio.BrokenResourceError, anyio.EndOfStream):
            return

    def _answer(self, req: Request, peer_id: str) -> Response:
        which, body = betterproto.which_one_of(req, "body")
        if which == "hello" and isinstance(body, NodeStatus):
            self._learn(body)
            return Response(id=req.id, status=self.status())
        if which == "role_change" and isinstance(body, RoleChange):
            return self._change_role(req.id, body, peer_id)
        return Response(id=req.id, error=f"unknown request {which or '(empty)'}")

    def _change_role(self, req_id: int, change: RoleChange, peer_id: str) -> Response:
        sender = self.members.records.get(peer_id)
        if sender is None or sender.state != ALIVE or not Role.parse(sender.role).is_sclerotium:
            return Response(id=req_id, error="role changes are only accepted from a live Sclerotium")
        if self.role is Role.DEDICATED_SCLEROTIUM or self.role is Role.HYPHA:
            return Response(id=req_id, error=f"a {self.role.label} does not change role")
        try:
            new = Role.parse(change.role)
        except MyceliumError as exc:
            return Response(id=req_id, error=str(exc))
        if new not in (Role.RHIZOMORPH, Role.DYNAMIC_SCLEROTIUM):
            return Response(id=req_id, error=f"cannot become {new.label} by a placement decision")
        if new is not self.role:
            self.log.warning(
                "role_changed",
                from_role=self.role.value,
                to_role=new.value,
                reason=change.reason,
                decided_by=change.decided_by,
            )
            self.decisions.append(f"{self.role.value} -> {new.value}: {change.reason}")
            self.role = new
        return Response(id=req_id, status=self.status())

    # -- placement (R3.2-4) ------------------------------------------------------------------
    def _members_for_policy(self) -> list[Member]:
        out = []
        me = self.status()
        for st in [me, *self.peer_status.values()]:
            rec = self.members.records.get(st.node_id)
            alive = st.node_id == me.node_id or (rec is not None and rec.state == ALIVE)
            role = Role.parse(rec.role if rec is not None and st.node_id != me.node_id else st.role)
            cap = Capacity(
                cpus=st.capacity.cpus,
                memory_bytes=st.capacity.memory_bytes,
                disk_bytes=st.capacity.disk_bytes,
                bandwidth_bps=st.capacity.bandwidth_bps,
                load=st.capacity.cpu_load,
            )
            out.append(Member(st.node_id, role, cap, alive))
        return out

    def _is_coordinator(self) -> bool:
        """The live Sclerotium with the smallest node id decides; all compute the same answer."""
        if not self.role.is_sclerotium:
            return False
        ids = [
            r.node_id
            for r in self.members.records.values()
            if r.state == ALIVE and Role.parse(r.role).is_sclerotium
        ]
        return all(self.credentials.node_id < other for other in ids)

    async def _placement_loop(self) -> None:
        # Let the membership settle first: a forming network is not a network lacking capacity.
        await anyio.sleep(self.config.dead_after * 2)
        while True:
            await anyio.sleep(self.config.probe_interval * 2)
            if not self._is_coordinator():
                continue
            for d in self.policy.decide(self._members_for_policy()):
                target = self.members.records.get(d.node_id)
                if target is None:
                    continue
                self.log.warning(
                    "placement_decision", node=target.name, to_role=d.to_role.value, reason=d.reason
                )
                self.decisions.append(f"{target.name}: {d.from_role.value} -> {d.to_role.value}: {d.reason}")
                try:
                    peer = await self._peer(target.mesh_address, target.node_id)
                    change = RoleChange(role=d.to_role.value, reason=d.reason, decided_by=self.config.name)
                    resp = await peer.call(Request(role_change=change), deadline=2.0)
                except _PEER_ERRORS:
                    await self._drop(target.node_id)
                    continue
                which, body = betterproto.which_one_of(resp, "body")
                if which == "status" and isinstance(body, NodeStatus):
                    target.role = body.role

    def _learn(self, status: NodeStatus) -> None:
        now = self.clock()
        for m in status.members:
            if (
                m.node_id != self.credentials.node_id
                and m.mesh_address
                and self.members.learn(record_from_pb(m), now)
            ):
                self.log.info("member_learned", member=m.name, via=status.name)

    # -- probing -----------------------------------------------------------------------------
    async def _peer(self, address: str, expected: str | None) -> _Peer:
        key = expected or address
        peer = self._peers.get(key)
        if peer is None:
            host, _, port = address.rpartition(":")
            stream = await connect(self.credentials, host, int(port), expected_node_id=expected)
            peer = _Peer(stream)
            self._peers[stream.peer.node_id] = peer
        return peer

    async def _drop(self, key: str) -> None:
        peer = self._peers.pop(key, None)
        if peer is not None:
            with anyio.CancelScope(shield=True):
                await peer.stream.aclose()

    async def _probe(self, address: str, expected: str | None, hello: NodeStatus) -> None:
        t0 = anyio.current_time()
        try:
            peer = await self._peer(address, expected)
            resp = await peer.call(Request(hello=hello), deadline=max(2.0, self.config.probe_interval * 2))
        except _PEER_ERRORS:
            if expected is not None:
                await self._drop(expected)
                before = self.members.records[expected].state if expected in self.members.records else None
                self.members.failed(expected, self.clock())
                after = self.members.records[expected].state
                if after != before:
                    self.log.warning("member_state", member=self.members.records[expected].name, state=after)
            return
        which, body = betterproto.which_one_of(resp, "body")
        if which != "status" or not isinstance(body, NodeStatus):
            return
        rec = MemberRecord(body.node_id, body.name, body.role, body.mesh_address, body.http_address)
        before = self.members.records[body.node_id].state if body.node_id in self.members.records else None
        self.members.succeeded(rec, self.clock(), anyio.current_time() - t0)
        if before != ALIVE:
            self.log.info("member_state", member=body.name, state=ALIVE)
        self.peer_status[body.node_id] = body
        self._learn(body)

    async def _probe_loop(self) -> None:
        while True:
            known = {r.mesh_address for r in self.members.records.values()}
            targets: list[tuple[str, str | None]] = [
                (r.mesh_address, r.node_id) for r in self.members.records.values() if r.mesh_address
            ]
            targets += [
                (seed, None) for seed in self.config.seeds if seed not in known and seed != self.mesh_address
            ]
            hello = self.status()  # one snapshot per round, not one per peer
            async with anyio.create_task_group() as tg:
                for address, expected in targets:
                    tg.start_soon(self._probe, address, expected, hello)
            counts = self.members.counts()
            for state, n in counts.items():
                _members_gauge.labels(state=state).set(n)
            if counts[ALIVE] or not self.config.seeds:
                self.ready.set()
            await anyio.sleep(self.config.probe_interval)
