"""The authenticated stream transport over real TCP on loopback: who gets in, who is refused, and why."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import secrets
import socket
import ssl
from collections.abc import Callable

import anyio
import pytest
from anyio.streams.tls import TLSAttribute, TLSStream
from prometheus_client import CollectorRegistry

import meshnet
import obs
from meshnet._handshake import transcript_mac
from meshnet._pb.meshnet.v1 import Hello, Proof, Verdict

pytestmark = pytest.mark.anyio

Member = Callable[..., meshnet.MeshCredentials]
Counter = Callable[[str], float]


async def eventually(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (server-side counters move after the client has its answer)."""
    with anyio.fail_after(limit):
        for _ in itertools.count():
            if predicate():
                return
            await anyio.sleep(0.01)


async def echo(stream: meshnet.FramedStream) -> None:
    async for frame in stream:
        await stream.send(stream.peer.node_id.encode() + b":" + frame)


async def test_two_nodes_of_one_network_talk_over_mutual_tls(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    server_creds, client_creds = member(net_a), member(net_a)
    seen: list[meshnet.PeerInfo] = []

    async def handler(stream: meshnet.FramedStream) -> None:
        seen.append(stream.peer)
        await echo(stream)

    async with (
        meshnet.MeshServer(server_creds, handler, metrics=metrics) as server,
        await meshnet.connect(client_creds, "127.0.0.1", server.port) as stream,
    ):
        assert stream.peer.node_id == server_creds.node_id
        assert stream.peer.network_id == net_a.network_id
        assert stream.peer.permissions == meshnet.ALL_PERMISSIONS
        assert not stream.peer.federated
        for payload in (b"", b"hello", bytes(range(256)) * 1000):
            await stream.send(payload)
            assert await stream.receive() == client_creds.node_id.encode() + b":" + payload
    assert seen[0].node_id == client_creds.node_id
    assert seen[0].public_key == client_creds.identity.public_key


async def test_large_frames_up_to_the_limit_pass_and_above_it_are_refused_by_the_sender(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    limit = 2 * 1024 * 1024
    server_creds, client_creds = member(net_a, max_frame_size=limit + 64), member(net_a, max_frame_size=limit)
    async with (
        meshnet.MeshServer(server_creds, echo, metrics=metrics) as server,
        await meshnet.connect(client_creds, "127.0.0.1", server.port) as stream,
    ):
        big = secrets.token_bytes(limit)
        await stream.send(big)
        with pytest.raises(meshnet.FrameTooLargeError):
            await stream.receive()  # the echo is 27 bytes longer than our own limit
        with pytest.raises(meshnet.FrameTooLargeError):
            await stream.send(big + b"x")


async def test_send_many_delivers_exactly_the_frames_of_separate_sends(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    server_creds, client_creds = member(net_a), member(net_a)
    got: list[bytes] = []
    done = anyio.Event()
    # small frames that get packed together, empty ones, and large ones sent as their own pieces
    frames = [b"", b"a", secrets.token_bytes(70_000), *(b"%d" % i for i in range(500)), b"", b"z" * 65_536]

    async def collect(stream: meshnet.FramedStream) -> None:
        async for frame in stream:
            got.append(frame)
            if len(got) == len(frames):
                done.set()

    async with (
        meshnet.MeshServer(server_creds, collect, metrics=metrics) as server,
        await meshnet.connect(client_creds, "127.0.0.1", server.port) as stream,
    ):
        await stream.send_many(frames)
        with anyio.fail_after(10):
            await done.wait()
        assert got == frames
        with pytest.raises(meshnet.FrameTooLargeError):
            await stream.send_many([b"ok", b"x" * (stream.max_frame_size + 1)])


async def test_node_of_another_network_is_refused_by_its_own_tls_check(
    net_a: meshnet.NetworkIdentity,
    net_b: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
    client_metrics: meshnet.MeshnetMetrics,
) -> None:
    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(member(net_b), "127.0.0.1", server.port, metrics=client_metrics)
    assert info.value.reason == "wrong_network"


async def test_node_of_another_network_is_refused_by_the_server_even_if_it_trusts_our_ca(
    net_a: meshnet.NetworkIdentity,
    net_b: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
    refusals: Counter,
) -> None:
    # B trusts A (one-sided link), A does not trust B: A's server must refuse at the handshake.
    link_to_a = net_a.federation_link({"read"}, meshnet.FederationLink.new_secret())
    intruder = member(net_b, trust=net_b.trust(federations=[link_to_a]))
    reached: list[str] = []

    async def handler(stream: meshnet.FramedStream) -> None:
        reached.append(stream.peer.node_id)

    async with meshnet.MeshServer(member(net_a), handler, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(intruder, "127.0.0.1", server.port)
        assert info.value.reason in {"refused_by_peer", "wrong_network"}
        await eventually(lambda: refusals("wrong_network") >= 1)
    assert reached == []


async def test_federated_network_is_accepted_with_its_permissions(
    net_a: meshnet.NetworkIdentity,
    net_b: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
) -> None:
    secret = meshnet.FederationLink.new_secret()
    a_trust = net_a.trust(federations=[net_b.federation_link({"spore.read", "blocks.read"}, secret)])
    b_trust = net_b.trust(federations=[net_a.federation_link({"spore.read"}, secret)])
    server_creds, client_creds = member(net_a, trust=a_trust), member(net_b, trust=b_trust)
    seen: list[meshnet.PeerInfo] = []

    async def handler(stream: meshnet.FramedStream) -> None:
        seen.append(stream.peer)
        await echo(stream)

    async with (
        meshnet.MeshServer(server_creds, handler, metrics=metrics) as server,
        await meshnet.connect(client_creds, "127.0.0.1", server.port) as stream,
    ):
        await stream.send(b"ping")
        assert await stream.receive() == client_creds.node_id.encode() + b":ping"
        assert stream.peer.network_id == net_a.network_id
        assert stream.peer.federated
        assert stream.peer.permissions == {"spore.read"}
    (peer,) = seen
    assert peer.network_id == net_b.network_id
    assert peer.federated
    assert peer.permissions == {"spore.read", "blocks.read"}
    assert peer.allows("blocks.read")
    assert not peer.allows("blocks.write")


async def test_federated_peer_with_the_wrong_federation_secret_is_refused(
    net_a: meshnet.NetworkIdentity,
    net_b: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
    refusals: Counter,
) -> None:
    a_trust = net_a.trust(federations=[net_b.federation_link({"read"}, meshnet.FederationLink.new_secret())])
    b_trust = net_b.trust(federations=[net_a.federation_link({"read"}, meshnet.FederationLink.new_secret())])
    async with meshnet.MeshServer(member(net_a, trust=a_trust), echo, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(member(net_b, trust=b_trust), "127.0.0.1", server.port)
    assert info.value.reason == "bad_proof"
    assert refusals("bad_proof") == 1


async def test_client_without_the_isolation_key_is_refused(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    # A valid certificate of network A, but the wrong isolation key (e.g. a mis-issued certificate).
    wrong_key = meshnet.NetworkTrust(
        ca_certificate=net_a.ca_certificate, isolation_key=secrets.token_bytes(32)
    )
    reached: list[str] = []

    async def handler(stream: meshnet.FramedStream) -> None:
        reached.append(stream.peer.node_id)

    async with meshnet.MeshServer(member(net_a), handler, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError, match="refused") as info:
            await meshnet.connect(member(net_a, trust=wrong_key), "127.0.0.1", server.port)
    assert info.value.reason == "bad_proof"
    assert refusals("bad_proof") == 1
    assert reached == []


async def test_server_without_the_isolation_key_is_refused_by_the_client(
    net_a: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
    client_metrics: meshnet.MeshnetMetrics,
) -> None:
    wrong_key = meshnet.NetworkTrust(
        ca_certificate=net_a.ca_certificate, isolation_key=secrets.token_bytes(32)
    )
    async with meshnet.MeshServer(member(net_a, trust=wrong_key), echo, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(member(net_a), "127.0.0.1", server.port, metrics=client_metrics)
    # The impostor server cannot check our proof, so it refuses us first; either way nobody gets in.
    assert info.value.reason == "bad_proof"


async def test_revoked_client_is_dropped_and_refused_and_others_still_served(
    net_a: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
    refusals: Counter,
    registry: CollectorRegistry,
) -> None:
    revoked, good = member(net_a), member(net_a)
    revocations = net_a.revoke(node_ids={revoked.node_id}, sequence=1)
    server_creds = member(net_a)
    async with (
        meshnet.MeshServer(server_creds, echo, metrics=metrics) as server,
        await meshnet.connect(revoked, "127.0.0.1", server.port) as before,
    ):
        assert before.peer.node_id == server_creds.node_id  # accepted before the list arrived
        await before.send(b"hi")
        assert await before.receive() == revoked.node_id.encode() + b":hi"
        dropped = server.update_credentials(
            server_creds.with_trust(server_creds.trust.with_revocations(revocations))
        )
        assert dropped == 1  # the live connection of the revoked node is closed now
        with pytest.raises(meshnet.StreamClosedError), anyio.fail_after(5):
            await before.receive()
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(revoked, "127.0.0.1", server.port)
        assert info.value.reason == "revoked"
        assert refusals("revoked") == 1
        async with await meshnet.connect(good, "127.0.0.1", server.port) as stream:
            await stream.send(b"still here")
            assert await stream.receive() == good.node_id.encode() + b":still here"
    assert registry.get_sample_value("mycelium_meshnet_peers_dropped_total", {"reason": "revoked"}) == 1


async def test_revoked_server_is_refused_by_the_client(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    server_creds = member(net_a)
    client = member(
        net_a,
        trust=net_a.trust(revocations=net_a.revoke(serials={server_creds.certificate.serial}, sequence=1)),
    )
    async with meshnet.MeshServer(server_creds, echo, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(client, "127.0.0.1", server.port)
    assert info.value.reason == "revoked"


async def test_expired_client_certificate_is_refused(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    expired = member(net_a, not_before=long_ago, validity=dt.timedelta(days=1))
    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError):
            await meshnet.connect(expired, "127.0.0.1", server.port)
        await eventually(lambda: refusals("expired") >= 1)


async def test_expired_server_certificate_is_refused_by_the_client(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    async with meshnet.MeshServer(
        member(net_a, not_before=long_ago, validity=dt.timedelta(days=1)), echo, metrics=metrics
    ) as server:
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(member(net_a), "127.0.0.1", server.port)
    assert info.value.reason == "expired"


async def test_connect_checks_the_expected_node_id(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError) as info:
            await meshnet.connect(member(net_a), "127.0.0.1", server.port, expected_node_id="someone-else")
    assert info.value.reason == "unexpected_node"


async def test_unreachable_peer_raises_peer_unreachable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    net = meshnet.NetworkIdentity.generate("lonely")
    with pytest.raises(meshnet.PeerUnreachableError, match=str(port)):
        await meshnet.connect(net.credentials_for(meshnet.NodeIdentity.generate()), "127.0.0.1", port)


# --- bad input: raw clients that speak TLS or not, and replays ---------------------------------


async def _raw_tls(creds: meshnet.MeshCredentials, port: int) -> TLSStream:
    tcp = await anyio.connect_tcp("127.0.0.1", port)
    return await TLSStream.wrap(
        tcp, server_side=False, ssl_context=creds.ssl_context(server_side=False), standard_compatible=False
    )


async def _read_frame(tls: TLSStream) -> bytes:
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        buf += await tls.receive()
    return buf[4 : 4 + int.from_bytes(buf[:4], "big")]


async def _good_client_still_works(creds: meshnet.MeshCredentials, port: int) -> None:
    async with await meshnet.connect(creds, "127.0.0.1", port) as stream:
        await stream.send(b"ok?")
        assert await stream.receive() == creds.node_id.encode() + b":ok?"


async def test_garbage_client_is_refused_and_a_good_client_still_works(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        for garbage in (b"GET / HTTP/1.1\r\n\r\n", secrets.token_bytes(4096), b"\x16\x03\x01\x00\x05hello"):
            async with await anyio.connect_tcp("127.0.0.1", server.port) as tcp:
                await tcp.send(garbage)
                with anyio.fail_after(5):
                    try:
                        while await tcp.receive():
                            pass
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        pass  # the server closed the connection on us
        await eventually(lambda: refusals("tls_error") + refusals("closed") >= 3)
        await _good_client_still_works(member(net_a), server.port)


async def test_garbage_inside_the_tunnel_is_refused_as_malformed(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        tls = await _raw_tls(member(net_a), server.port)
        await tls.send(
            meshnet.encode_frame(bytes(Hello(version=1, nonce=b"short")))
        )  # nonce must be 32 bytes
        await eventually(lambda: refusals("malformed") >= 1)
        await tls.aclose()
        tls = await _raw_tls(member(net_a), server.port)
        await tls.send(b"\xff\xff\xff\xff")  # announces a 4 GiB handshake frame
        await eventually(lambda: refusals("malformed") >= 2)
        await tls.aclose()
        await _good_client_still_works(member(net_a), server.port)


async def test_replayed_hello_nonce_is_refused_as_replay(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    client = member(net_a)
    nonce = secrets.token_bytes(32)

    async def handshake() -> Verdict:
        tls = await _raw_tls(client, server.port)
        server_fp = hashlib.sha256(tls.extra(TLSAttribute.peer_certificate_binary) or b"").digest()  # noqa: S610
        await tls.send(meshnet.encode_frame(bytes(Hello(version=1, nonce=nonce))))
        hello = Hello().parse(await _read_frame(tls))
        mac = transcript_mac(
            net_a.isolation_key, b"client", client.certificate.fingerprint, server_fp, nonce, hello.nonce
        )
        await tls.send(meshnet.encode_frame(bytes(Proof(mac=mac))))
        verdict = Verdict().parse(await _read_frame(tls))
        await tls.aclose()
        return verdict

    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        first = await handshake()
        assert first.accepted
        second = await handshake()
        assert not second.accepted
        assert second.reason == "replay"
        assert refusals("replay") == 1


async def test_replayed_proof_from_an_earlier_connection_is_refused(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    client = member(net_a)
    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        # Record a genuine handshake...
        tls = await _raw_tls(client, server.port)
        server_fp = hashlib.sha256(tls.extra(TLSAttribute.peer_certificate_binary) or b"").digest()  # noqa: S610
        nonce = secrets.token_bytes(32)
        await tls.send(meshnet.encode_frame(bytes(Hello(version=1, nonce=nonce))))
        hello = Hello().parse(await _read_frame(tls))
        recorded = transcript_mac(
            net_a.isolation_key, b"client", client.certificate.fingerprint, server_fp, nonce, hello.nonce
        )
        await tls.aclose()
        # ...and replay its proof on a new connection (fresh client nonce, so only the MAC is stale).
        tls = await _raw_tls(client, server.port)
        await tls.send(meshnet.encode_frame(bytes(Hello(version=1, nonce=secrets.token_bytes(32)))))
        await _read_frame(tls)
        await tls.send(meshnet.encode_frame(bytes(Proof(mac=recorded))))
        verdict = Verdict().parse(await _read_frame(tls))
        await tls.aclose()
    assert not verdict.accepted
    assert verdict.reason == "bad_proof"
    assert refusals("bad_proof") == 1


async def test_client_without_certificate_is_refused(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        tcp = await anyio.connect_tcp("127.0.0.1", server.port)
        tls = await TLSStream.wrap(tcp, server_side=False, ssl_context=ctx, standard_compatible=False)
        await tls.send(meshnet.encode_frame(bytes(Hello(version=1, nonce=secrets.token_bytes(32)))))
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError)), anyio.fail_after(5):
            await tls.receive()
        await eventually(lambda: refusals("bad_certificate") >= 1)
        await _good_client_still_works(member(net_a), server.port)


async def test_silent_client_times_out_and_frees_its_slot(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics, refusals: Counter
) -> None:
    server_creds = member(net_a, handshake_timeout=0.3)
    async with meshnet.MeshServer(server_creds, echo, metrics=metrics, max_pending_handshakes=1) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port):
            await eventually(lambda: refusals("timeout") >= 1)
        await _good_client_still_works(member(net_a), server.port)


# --- after the handshake: frames -----------------------------------------------------------------


async def test_oversized_frame_from_a_peer_closes_only_that_connection(
    net_a: meshnet.NetworkIdentity,
    member: Member,
    registry: CollectorRegistry,
    metrics: meshnet.MeshnetMetrics,
) -> None:
    errors: list[BaseException] = []

    async def handler(stream: meshnet.FramedStream) -> None:
        try:
            await stream.receive()
        except meshnet.DecodeError as exc:
            errors.append(exc)
            raise

    server_creds = member(net_a, max_frame_size=1024)
    async with meshnet.MeshServer(server_creds, handler, metrics=metrics) as server:
        big_sender = member(net_a)
        async with await meshnet.connect(big_sender, "127.0.0.1", server.port) as stream:
            await stream.send(b"x" * 5000)
            with pytest.raises(meshnet.StreamClosedError), anyio.fail_after(5):
                await stream.receive()
        assert isinstance(errors[0], meshnet.FrameTooLargeError)
        value = registry.get_sample_value("mycelium_meshnet_decode_errors_total", {"kind": "frame_too_large"})
        assert value == 1

        async def echo_small(stream: meshnet.FramedStream) -> None:
            await echo(stream)

        server._handler = echo_small  # same server, a well-behaved client afterwards
        await _good_client_still_works(member(net_a), server.port)


async def test_truncated_frame_raises_decode_error_not_a_clean_close(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    async def half_frame(stream: meshnet.FramedStream) -> None:
        await stream._transport.send(b"\x00\x00\x01\x00" + b"y" * 10)  # announces 256 bytes, sends 10

    async with (
        meshnet.MeshServer(member(net_a), half_frame, metrics=metrics) as server,
        await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream,
    ):
        with pytest.raises(meshnet.DecodeError, match="inside a frame"), anyio.fail_after(5):
            await stream.receive()


async def test_send_applies_back_pressure_when_the_peer_does_not_read(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    release = anyio.Event()

    async def lazy(stream: meshnet.FramedStream) -> None:
        await release.wait()

    chunk = b"z" * (1024 * 1024)
    sent = 0
    async with (
        meshnet.MeshServer(member(net_a), lazy, metrics=metrics) as server,
        await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream,
    ):
        with anyio.move_on_after(1.0):
            for _ in range(512):
                await stream.send(chunk)
                sent += 1
        release.set()
    # Kernel socket buffers hold a few MiB; a sender that never blocked would have pushed 512 MiB.
    assert 0 < sent < 512


async def test_peers_connected_gauge_follows_open_streams(
    net_a: meshnet.NetworkIdentity,
    member: Member,
    registry: CollectorRegistry,
    metrics: meshnet.MeshnetMetrics,
) -> None:
    def gauge() -> float:
        return registry.get_sample_value("mycelium_meshnet_peers_connected_count") or 0.0

    async with meshnet.MeshServer(member(net_a), echo, metrics=metrics) as server:
        stream = await meshnet.connect(member(net_a), "127.0.0.1", server.port, metrics=metrics)
        await stream.send(b"x")
        await stream.receive()
        assert gauge() == 2  # our client end and the server's end share this registry
        await stream.aclose()
        await eventually(lambda: gauge() == 0)


async def test_refusals_are_logged_without_key_material(
    net_a: meshnet.NetworkIdentity,
    member: Member,
    metrics: meshnet.MeshnetMetrics,
    refusals: Counter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_key = meshnet.NetworkTrust(
        ca_certificate=net_a.ca_certificate, isolation_key=secrets.token_bytes(32)
    )
    intruder = member(net_a, trust=wrong_key)
    server_creds = member(net_a)
    caplog.set_level("INFO", logger="meshnet")
    async with meshnet.MeshServer(server_creds, echo, metrics=metrics) as server:
        with pytest.raises(meshnet.HandshakeError):
            await meshnet.connect(intruder, "127.0.0.1", server.port)
        await eventually(lambda: refusals("bad_proof") >= 1)
    formatter = obs.JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any("handshake_refused" in line and "bad_proof" in line for line in lines)
    secrets_ = [
        net_a.isolation_key,
        wrong_key.isolation_key,
        server_creds.identity.private_key_object().private_bytes_raw(),
    ]
    for line in lines:
        for secret in secrets_:
            assert secret.hex() not in line
            assert repr(secret) not in line


async def test_a_failing_handler_closes_only_its_connection(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    calls = 0

    async def flaky(stream: meshnet.FramedStream) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("handler bug")
        await echo(stream)

    async with meshnet.MeshServer(member(net_a), flaky, metrics=metrics) as server:
        async with await meshnet.connect(member(net_a), "127.0.0.1", server.port) as first:
            with pytest.raises(meshnet.StreamClosedError), anyio.fail_after(5):
                await first.receive()
        await _good_client_still_works(member(net_a), server.port)


async def test_concurrent_senders_never_interleave_frames(
    net_a: meshnet.NetworkIdentity, member: Member, metrics: meshnet.MeshnetMetrics
) -> None:
    received: list[bytes] = []
    done = anyio.Event()
    expected = [
        bytes([task]) * (1 + (task * 7919 + i * 104729) % 200_000) for task in range(8) for i in range(20)
    ]

    async def collect(stream: meshnet.FramedStream) -> None:
        async for frame in stream:
            received.append(frame)
            if len(received) == len(expected):
                done.set()

    async with (
        meshnet.MeshServer(member(net_a), collect, metrics=metrics) as server,
        await meshnet.connect(member(net_a), "127.0.0.1", server.port) as stream,
    ):

        async def sender(task: int) -> None:
            for i in range(20):
                await stream.send(bytes([task]) * (1 + (task * 7919 + i * 104729) % 200_000))

        async with anyio.create_task_group() as tg:
            for task in range(8):
                tg.start_soon(sender, task)
        with anyio.fail_after(20):
            await done.wait()
    assert sorted(received) == sorted(expected)
    assert all(len(set(frame)) == 1 for frame in received)
