"""Every decoder of network input: bounded, and typed errors (never anything else) on any bytes."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meshnet
from meshnet._codec import decode_message, frame_length
from meshnet._grpc import _grpc_mac, verify_grpc_proof
from meshnet._handshake import decode_hello, decode_proof, decode_verdict
from meshnet._pb.meshnet.v1 import Hello, Proof, RevocationBody, SignedRevocationList, Verdict

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(
    frames=st.lists(st.binary(max_size=300), max_size=20), cuts=st.lists(st.integers(0, 10_000), max_size=10)
)
@FUZZ
def test_frames_survive_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(meshnet.encode_frame(f, 1024) for f in frames)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    decoder = meshnet.FrameDecoder(1024)
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += decoder.feed(wire[start:end])
    decoder.close()
    assert out == frames


@given(data=st.binary(max_size=2000))
@FUZZ
def test_frame_decoder_on_garbage_yields_bounded_frames_or_decode_error(data: bytes) -> None:
    decoder = meshnet.FrameDecoder(256)
    try:
        frames = decoder.feed(data)
    except meshnet.DecodeError:
        return
    assert all(len(f) <= 256 for f in frames)
    assert decoder.pending <= 256 + 4


def test_oversized_length_is_refused_before_reading_the_payload() -> None:
    decoder = meshnet.FrameDecoder(1024)
    with pytest.raises(meshnet.FrameTooLargeError, match="1025 exceeds max_frame_size 1024"):
        decoder.feed((1025).to_bytes(4, "big"))
    with pytest.raises(meshnet.FrameTooLargeError):
        meshnet.encode_frame(b"x" * 1025, 1024)
    with pytest.raises(meshnet.DecodeError, match="header must be 4 bytes"):
        frame_length(b"\x00\x01", 10)


def test_truncated_frame_is_reported_at_end_of_input() -> None:
    decoder = meshnet.FrameDecoder(1024)
    assert decoder.feed(meshnet.encode_frame(b"hello world")[:-3]) == []
    with pytest.raises(meshnet.DecodeError, match="incomplete frame"):
        decoder.close()


@pytest.mark.parametrize("decoder", [decode_hello, decode_proof, decode_verdict])
@given(data=st.binary(max_size=600))
@FUZZ
def test_handshake_decoders_raise_only_handshake_errors(decoder: object, data: bytes) -> None:
    assert callable(decoder)
    reason = None
    try:
        decoder(data)
    except meshnet.HandshakeError as exc:
        reason = exc.reason
    assert reason in {None, "malformed", "version"}


@given(
    nonce=st.binary(min_size=32, max_size=32), network=st.text(max_size=64), version=st.integers(0, 2**32 - 1)
)
@FUZZ
def test_hello_round_trips_and_checks_version(nonce: bytes, network: str, version: int) -> None:
    data = bytes(Hello(version=version, nonce=nonce, network_id=network))
    if version != 1:
        with pytest.raises(meshnet.HandshakeError, match="version"):
            decode_hello(data)
        return
    hello = decode_hello(data)
    assert hello.nonce == nonce
    assert hello.network_id == network


@given(mac=st.binary(max_size=64))
@FUZZ
def test_proof_mac_length_is_enforced(mac: bytes) -> None:
    data = bytes(Proof(mac=mac))
    if len(mac) == 32:
        assert decode_proof(data).mac == mac
    else:
        with pytest.raises(meshnet.HandshakeError, match=r"Proof\.mac"):
            decode_proof(data)


def test_verdict_with_unknown_reason_is_malformed() -> None:
    with pytest.raises(meshnet.HandshakeError, match="not a known reason"):
        decode_verdict(bytes(Verdict(accepted=False, reason="because")))
    assert decode_verdict(bytes(Verdict(accepted=False, reason="revoked"))).reason == "revoked"


def test_handshake_messages_above_their_bound_are_refused() -> None:
    with pytest.raises(meshnet.HandshakeError, match="malformed"):
        decode_hello(bytes(Hello(version=1, nonce=b"n" * 5000)))


@given(data=st.binary(max_size=1000))
@FUZZ
def test_generic_message_decoder_raises_only_decode_error(data: bytes) -> None:
    for cls in (Hello, Proof, Verdict, RevocationBody, SignedRevocationList):
        with contextlib.suppress(meshnet.DecodeError):
            decode_message(cls, data, max_bytes=800)


@given(data=st.binary(max_size=1500))
@FUZZ
def test_revocation_list_decoder_raises_only_typed_errors(
    data: bytes, net_a: meshnet.NetworkIdentity
) -> None:
    with pytest.raises((meshnet.DecodeError, meshnet.CertificateError)):
        meshnet.RevocationList.from_bytes(data, net_a.public_key)


@given(
    node_ids=st.lists(st.text(max_size=30), max_size=5),
    serials=st.lists(st.text(max_size=45), max_size=5),
    issued=st.integers(-(2**63), 2**63 - 1),
)
@FUZZ
def test_signed_but_odd_revocation_bodies_are_decoded_or_refused_with_decode_error(
    node_ids: list[str], serials: list[str], issued: int, net_a: meshnet.NetworkIdentity
) -> None:
    body = bytes(
        RevocationBody(
            network_id=net_a.network_id, sequence=1, issued_at_unix=issued, node_ids=node_ids, serials=serials
        )
    )
    data = bytes(SignedRevocationList(body=body, signature=net_a.sign(body)))
    try:
        decoded = meshnet.RevocationList.from_bytes(data, net_a.public_key)
    except meshnet.DecodeError:
        return
    assert decoded.node_ids == frozenset(node_ids)


@given(data=st.binary(max_size=2000))
@FUZZ
def test_certificate_parser_raises_only_certificate_error(data: bytes) -> None:
    with pytest.raises(meshnet.CertificateError):
        meshnet.NodeCertificate(data)
    with pytest.raises(meshnet.CertificateError):
        meshnet.NodeCertificate.from_pem(
            b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----\n"
        )


@given(flip=st.integers(0, 10_000))
@FUZZ
def test_bit_flipped_certificates_are_refused_or_still_self_consistent(
    flip: int, net_a: meshnet.NetworkIdentity
) -> None:
    cert = net_a.issue(bytes(range(32)))
    data = bytearray(cert.der)
    data[flip % len(data)] ^= 1 << (flip % 8)
    try:
        parsed = meshnet.NodeCertificate(bytes(data))
    except meshnet.CertificateError:
        return
    # Whatever still parses and verifies has exactly the signed content the network issued (a flip in
    # the unsigned outer algorithm field may survive; it changes nothing a peer relies on).
    if parsed.signed_by(net_a.public_key):
        signed = x509.load_der_x509_certificate(bytes(data)).tbs_certificate_bytes
        assert signed == x509.load_der_x509_certificate(cert.der).tbs_certificate_bytes
        assert (parsed.node_id, parsed.serial, parsed.not_after) == (
            cert.node_id,
            cert.serial,
            cert.not_after,
        )


@given(raw=st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=80)))
@FUZZ
def test_grpc_proof_parser_raises_only_handshake_errors(raw: object) -> None:
    with pytest.raises(meshnet.HandshakeError) as info:
        verify_grpc_proof(raw, bytes(32), bytes(32), now=1000.0, max_age=300.0)
    assert info.value.reason in {"bad_proof", "malformed", "replay"}


@given(seconds=st.integers(0, 10**12 - 1), now=st.floats(0, 1e12))
@FUZZ
def test_grpc_proof_accepts_only_the_right_mac_within_the_age_limit(seconds: int, now: float) -> None:
    secret, fp = bytes(range(32)), bytes(32)
    good = f"{seconds}.{_grpc_mac(secret, fp, seconds)}"
    if abs(now - seconds) <= 300.0:
        verify_grpc_proof(good, secret, fp, now=now, max_age=300.0)
        with pytest.raises(meshnet.HandshakeError, match="does not know"):
            verify_grpc_proof(good, bytes(32), fp, now=now, max_age=300.0)
    else:
        with pytest.raises(meshnet.HandshakeError, match="old"):
            verify_grpc_proof(good, secret, fp, now=now, max_age=300.0)


def test_feed_into_hands_out_the_frames_before_a_bad_header_and_progress_tracks_a_cut_frame() -> None:
    decoder = meshnet.FrameDecoder(100)
    out: list[bytes] = []
    with pytest.raises(meshnet.FrameTooLargeError):
        decoder.feed_into(meshnet.encode_frame(b"ok", 100) + (101).to_bytes(4, "big"), out)
    assert out == [b"ok"]
    assert decoder.delivered == 2

    big = meshnet.FrameDecoder(1 << 20)
    wire = meshnet.encode_frame(b"z" * 40_000, 1 << 20)
    assert big.progress is None
    big.feed(wire[:2])
    assert big.progress == (2, 4)  # inside the header
    big.feed(wire[2:20_004])
    assert big.progress == (20_000, 40_000)  # inside a gathered payload
    assert big.feed(wire[20_004:]) == [b"z" * 40_000]
    assert big.progress is None
