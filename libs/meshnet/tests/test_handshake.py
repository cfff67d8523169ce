"""The isolation-proof handshake as sans-I/O state machines: no sockets, exact and deterministic."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meshnet
from meshnet._handshake import NonceCache
from meshnet._handshake_state import ClientHandshake, ServerHandshake
from meshnet._pb.meshnet.v1 import Verdict

Member = Callable[..., meshnet.MeshCredentials]


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


def machines(
    server: meshnet.MeshCredentials,
    client: meshnet.MeshCredentials,
    nonces: NonceCache,
    client_seed: int = 1,
    server_seed: int = 2,
) -> tuple[ClientHandshake, ServerHandshake]:
    """Both sides as they would be after TLS, each having checked the other's certificate."""
    client_side = ClientHandshake(
        check=client.check_peer(server.certificate.der),
        client_fp=client.certificate.fingerprint,
        server_fp=server.certificate.fingerprint,
        random=seeded(client_seed),
    )
    try:
        check, problem = server.check_peer(client.certificate.der), None
    except meshnet.HandshakeError as exc:
        check, problem = None, exc
    server_side = ServerHandshake(
        check=check,
        problem=problem,
        client_fp=client.certificate.fingerprint,
        server_fp=server.certificate.fingerprint,
        network_id=server.network_id,
        nonces=nonces,
        random=seeded(server_seed),
    )
    return client_side, server_side


def run(
    client: ClientHandshake, server: ServerHandshake
) -> tuple[meshnet.PeerInfo | meshnet.HandshakeError, meshnet.PeerInfo | meshnet.HandshakeError]:
    """Shuttle the frames; returns (client outcome, server outcome)."""
    proof = client.receive_hello(server.receive_hello(client.hello()))
    verdict, server_outcome = server.receive_proof(proof)
    try:
        return client.receive_verdict(verdict), server_outcome
    except meshnet.HandshakeError as exc:
        return exc, server_outcome


def test_members_accept_each_other(net_a: meshnet.NetworkIdentity, member: Member) -> None:
    server, client = member(net_a), member(net_a)
    client_outcome, server_outcome = run(*machines(server, client, NonceCache()))
    assert isinstance(client_outcome, meshnet.PeerInfo)
    assert client_outcome.node_id == server.node_id
    assert isinstance(server_outcome, meshnet.PeerInfo)
    assert server_outcome.node_id == client.node_id


def test_the_exchange_is_deterministic_given_the_nonce_sources(
    net_a: meshnet.NetworkIdentity, member: Member
) -> None:
    server, client = member(net_a), member(net_a)

    def transcript() -> list[bytes]:
        c, s = machines(server, client, NonceCache())
        hello = c.hello()
        server_hello = s.receive_hello(hello)
        proof = c.receive_hello(server_hello)
        verdict, _ = s.receive_proof(proof)
        return [hello, server_hello, proof, verdict]

    assert transcript() == transcript()


def test_wrong_isolation_key_is_refused_on_both_sides(net_a: meshnet.NetworkIdentity, member: Member) -> None:
    wrong = meshnet.NetworkTrust(net_a.ca_certificate, bytes(32))
    client_outcome, server_outcome = run(*machines(member(net_a), member(net_a, trust=wrong), NonceCache()))
    assert isinstance(server_outcome, meshnet.HandshakeError)
    assert server_outcome.reason == "bad_proof"
    assert isinstance(client_outcome, meshnet.HandshakeError)
    assert client_outcome.reason == "bad_proof"


def test_a_reused_client_nonce_is_a_replay(net_a: meshnet.NetworkIdentity, member: Member) -> None:
    server, client, nonces = member(net_a), member(net_a), NonceCache()
    first = run(*machines(server, client, nonces, client_seed=5, server_seed=1))
    second = run(*machines(server, client, nonces, client_seed=5, server_seed=2))
    assert isinstance(first[1], meshnet.PeerInfo)
    assert isinstance(second[1], meshnet.HandshakeError)
    assert second[1].reason == "replay"


def test_the_nonce_cache_is_bounded_and_forgets_the_oldest() -> None:
    cache = NonceCache(capacity=2)
    assert cache.check_and_add(b"a")
    assert cache.check_and_add(b"b")
    assert not cache.check_and_add(b"a")
    assert cache.check_and_add(b"c")
    assert cache.check_and_add(b"a")  # evicted, so new again (the MAC still binds the server nonce)


def test_a_refused_certificate_is_reported_to_the_client_with_its_reason(
    net_a: meshnet.NetworkIdentity, member: Member
) -> None:
    client = member(net_a)
    server = member(net_a, trust=net_a.trust(revocations=net_a.revoke(node_ids={client.node_id}, sequence=1)))
    client_outcome, server_outcome = run(*machines(server, client, NonceCache()))
    assert isinstance(server_outcome, meshnet.HandshakeError)
    assert server_outcome.reason == "revoked"
    assert isinstance(client_outcome, meshnet.HandshakeError)
    assert client_outcome.reason == "revoked"


def test_a_forged_server_verdict_is_refused_by_the_client(
    net_a: meshnet.NetworkIdentity, member: Member
) -> None:
    client, server = machines(member(net_a), member(net_a), NonceCache())
    client.receive_hello(server.receive_hello(client.hello()))
    with pytest.raises(meshnet.HandshakeError) as info:
        client.receive_verdict(bytes(Verdict(accepted=True, mac=bytes(32))))
    assert info.value.reason == "bad_proof"


def test_messages_out_of_order_are_malformed(net_a: meshnet.NetworkIdentity, member: Member) -> None:
    client, server = machines(member(net_a), member(net_a), NonceCache())
    hello = client.hello()
    with pytest.raises(meshnet.HandshakeError, match="Proof arrived in state 'wait_hello'"):
        server.receive_proof(hello)
    with pytest.raises(meshnet.HandshakeError, match="Verdict arrived"):
        client.receive_verdict(hello)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(step=st.integers(0, 2), data=st.binary(max_size=300))
def test_any_bytes_at_any_step_give_a_handshake_error_or_a_valid_step(
    step: int, data: bytes, net_a: meshnet.NetworkIdentity, member: Member
) -> None:
    client, server = machines(member(net_a), member(net_a), NonceCache())
    hello = client.hello()
    reason = None
    try:
        if step == 0:
            server.receive_hello(data)
        elif step == 1:
            client.receive_hello(data)
        else:
            client.receive_hello(server.receive_hello(hello))
            verdict, outcome = server.receive_proof(data)
            assert isinstance(outcome, meshnet.HandshakeError)  # random bytes never carry a valid MAC
            assert not Verdict().parse(verdict).accepted
    except meshnet.HandshakeError as exc:
        reason = exc.reason
    assert reason is None or reason in meshnet.REFUSAL_REASONS
