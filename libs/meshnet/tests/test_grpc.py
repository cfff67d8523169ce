"""gRPC (grpclib) over meshnet credentials: mutual TLS plus the isolation proof on every call."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import anyio
import grpclib.const
import grpclib.server
import pytest
from grpclib.client import UnaryUnaryMethod
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

import meshnet
from meshnet._pb.meshnet.v1 import Hello

pytestmark = pytest.mark.anyio

Member = Callable[..., meshnet.MeshCredentials]
Counter = Callable[[str], float]
PATH = "/meshnet.test.Whoami/Ask"


class Whoami:
    """A test service: answers with the caller's verified node id (in Hello.network_id, a str field)."""

    def __init__(self) -> None:
        self.server: meshnet.MeshGrpcServer | None = None
        self.callers: list[meshnet.PeerInfo] = []

    async def ask(self, stream: grpclib.server.Stream[Hello, Hello]) -> None:
        request = await stream.recv_message()
        assert request is not None
        assert self.server is not None
        peer = self.server.authenticator.peer(stream)
        self.callers.append(peer)
        await stream.send_message(Hello(version=request.version, network_id=peer.node_id))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {PATH: grpclib.const.Handler(self.ask, grpclib.const.Cardinality.UNARY_UNARY, Hello, Hello)}


async def call(channel: Any) -> Hello:
    method: UnaryUnaryMethod[Hello, Hello] = UnaryUnaryMethod(channel, PATH, Hello, Hello)
    with anyio.fail_after(10):
        return await method(Hello(version=7))


async def test_member_calls_a_grpc_service_and_the_server_sees_who_it_is(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    service, client = Whoami(), member(net_a)
    async with meshnet.MeshGrpcServer(member(net_a), [service], metrics=metrics) as server:
        service.server = server
        channel = meshnet.grpc_channel(client, "127.0.0.1", server.port)
        try:
            reply = await call(channel)
            again = await call(channel)
        finally:
            channel.close()
    assert reply.version == 7
    assert reply.network_id == client.node_id == again.network_id
    assert service.callers[0].network_id == net_a.network_id
    assert not service.callers[0].federated


async def test_grpc_client_of_another_network_fails_mutual_tls(
    net_a: meshnet.NetworkIdentity,
    net_b: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
) -> None:
    service = Whoami()
    async with meshnet.MeshGrpcServer(member(net_a), [service], metrics=metrics) as server:
        service.server = server
        channel = meshnet.grpc_channel(member(net_b), "127.0.0.1", server.port)
        try:
            with pytest.raises((OSError, StreamTerminatedError, GRPCError)):
                await call(channel)
        finally:
            channel.close()
    assert service.callers == []


async def test_grpc_client_without_the_isolation_key_is_unauthenticated(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    service = Whoami()
    wrong = member(net_a, trust=meshnet.NetworkTrust(net_a.ca_certificate, secrets.token_bytes(32)))
    async with meshnet.MeshGrpcServer(member(net_a), [service], metrics=metrics) as server:
        service.server = server
        channel = meshnet.grpc_channel(wrong, "127.0.0.1", server.port)
        try:
            with pytest.raises(GRPCError) as info:
                await call(channel)
        finally:
            channel.close()
    assert info.value.status == Status.UNAUTHENTICATED
    assert refusals("bad_proof") == 1
    assert service.callers == []


async def test_grpc_stale_proof_is_refused(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    service = Whoami()
    async with meshnet.MeshGrpcServer(member(net_a), [service], metrics=metrics) as server:
        service.server = server
        channel = meshnet.grpc_channel(member(net_a), "127.0.0.1", server.port, clock=lambda: 1_000_000.0)
        try:
            with pytest.raises(GRPCError) as info:
                await call(channel)
        finally:
            channel.close()
    assert info.value.status == Status.UNAUTHENTICATED
    assert refusals("replay") == 1


async def test_grpc_federated_caller_is_accepted_with_its_permissions(
    net_a: meshnet.NetworkIdentity,
    net_b: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
) -> None:
    secret = meshnet.FederationLink.new_secret()
    server_creds = member(net_a, trust=net_a.trust(federations=[net_b.federation_link({"whoami"}, secret)]))
    client = member(net_b, trust=net_b.trust(federations=[net_a.federation_link({"none"}, secret)]))
    service = Whoami()
    async with meshnet.MeshGrpcServer(server_creds, [service], metrics=metrics) as server:
        service.server = server
        channel = meshnet.grpc_channel(client, "127.0.0.1", server.port, network_id=net_a.network_id)
        try:
            reply = await call(channel)
        finally:
            channel.close()
    assert reply.network_id == client.node_id
    (caller,) = service.callers
    assert caller.federated
    assert caller.network_id == net_b.network_id
    assert caller.permissions == {"whoami"}


def test_grpc_channel_to_an_unknown_network_is_refused(
    net_a: meshnet.NetworkIdentity, member: Member
) -> None:
    with pytest.raises(meshnet.MeshnetError, match="neither ours nor federated"):
        meshnet.grpc_channel(member(net_a), "127.0.0.1", 1, network_id="elsewhere")
