"""Node certificates, renewal, revocation lists, federation links and credential consistency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

import meshnet

UTC = dt.UTC
Member = Callable[..., meshnet.MeshCredentials]


def test_issued_certificate_names_the_node_and_network(net_a: meshnet.NetworkIdentity) -> None:
    ident = meshnet.NodeIdentity.generate()
    cert = net_a.issue(ident.public_key)
    assert cert.node_id == ident.node_id
    assert cert.network_id == net_a.network_id
    assert cert.public_key == ident.public_key
    assert cert.signed_by(net_a.public_key)
    assert cert.not_after - cert.not_before == meshnet.DEFAULT_NODE_CERT_VALIDITY
    parsed = x509.load_der_x509_certificate(cert.der)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ident.node_id in san.get_values_for_type(x509.DNSName)
    assert meshnet.NodeCertificate.from_pem(cert.pem) == cert
    assert ident.node_id in repr(cert)


def test_certificate_of_another_network_is_not_signed_by_this_one(
    net_a: meshnet.NetworkIdentity, net_b: meshnet.NetworkIdentity
) -> None:
    cert = net_b.issue(meshnet.NodeIdentity.generate().public_key)
    assert not cert.signed_by(net_a.public_key)


def test_renewal_is_due_after_two_thirds_of_the_lifetime(net_a: meshnet.NetworkIdentity) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=UTC)
    cert = net_a.issue(
        meshnet.NodeIdentity.generate().public_key, validity=dt.timedelta(hours=3), not_before=start
    )
    assert cert.renew_at() == start + dt.timedelta(hours=2)
    assert not cert.needs_renewal(start + dt.timedelta(hours=1, minutes=59))
    assert cert.needs_renewal(start + dt.timedelta(hours=2))
    assert cert.needs_renewal(start + dt.timedelta(hours=5))  # expired: certainly renew
    assert cert.renew_at(0.5) == start + dt.timedelta(hours=1, minutes=30)
    with pytest.raises(meshnet.CertificateError, match="fraction"):
        cert.renew_at(1.5)


def test_renewed_credentials_keep_the_key_and_take_the_new_certificate(
    net_a: meshnet.NetworkIdentity, member: Callable[..., meshnet.MeshCredentials]
) -> None:
    creds = member(net_a)
    fresh = net_a.issue(creds.identity.public_key)
    renewed = creds.renewed(fresh)
    assert renewed.certificate.serial == fresh.serial != creds.certificate.serial
    assert renewed.node_id == creds.node_id


def test_credentials_refuse_a_certificate_for_another_key(net_a: meshnet.NetworkIdentity) -> None:
    cert = net_a.issue(meshnet.NodeIdentity.generate().public_key)
    with pytest.raises(meshnet.CertificateError, match="certificate is for node"):
        meshnet.MeshCredentials(meshnet.NodeIdentity.generate(), cert, net_a.trust())


def test_credentials_refuse_a_certificate_from_another_network(
    net_a: meshnet.NetworkIdentity, net_b: meshnet.NetworkIdentity
) -> None:
    ident = meshnet.NodeIdentity.generate()
    with pytest.raises(meshnet.CertificateError, match="not signed by network"):
        meshnet.MeshCredentials(ident, net_b.issue(ident.public_key), net_a.trust())


@pytest.mark.parametrize(("field", "value"), [("max_frame_size", 10), ("handshake_timeout", 0.0)])
def test_credentials_validate_transport_limits(
    net_a: meshnet.NetworkIdentity, member: Callable[..., meshnet.MeshCredentials], field: str, value: float
) -> None:
    with pytest.raises(ValueError, match=field):
        member(net_a, **{field: value})


def test_revocation_list_round_trips_and_matches_by_node_or_serial(net_a: meshnet.NetworkIdentity) -> None:
    a, b, c = (net_a.issue(meshnet.NodeIdentity.generate().public_key) for _ in range(3))
    revoked = net_a.revoke(node_ids={a.node_id}, serials={b.serial}, sequence=1)
    decoded = meshnet.RevocationList.from_bytes(revoked.to_bytes(), net_a.public_key)
    assert decoded == revoked
    assert decoded.is_revoked(a)
    assert decoded.is_revoked(b)
    assert not decoded.is_revoked(c)


def test_revocation_list_signed_by_another_key_is_refused(
    net_a: meshnet.NetworkIdentity, net_b: meshnet.NetworkIdentity
) -> None:
    data = net_b.revoke(node_ids={"x"}, sequence=1).to_bytes()
    with pytest.raises(meshnet.CertificateError, match="not signed"):
        meshnet.RevocationList.from_bytes(data, net_a.public_key)


def test_tampered_revocation_list_is_refused(net_a: meshnet.NetworkIdentity) -> None:
    data = bytearray(net_a.revoke(node_ids={"victim"}, sequence=1).to_bytes())
    index = data.find(b"victim")
    data[index] ^= 0x20
    with pytest.raises(meshnet.CertificateError):
        meshnet.RevocationList.from_bytes(bytes(data), net_a.public_key)


def test_trust_only_accepts_newer_revocation_lists(net_a: meshnet.NetworkIdentity) -> None:
    trust = net_a.trust(revocations=net_a.revoke(node_ids={"x"}, sequence=5))
    newer = trust.with_revocations(net_a.revoke(node_ids={"x", "y"}, sequence=6))
    assert newer.revocations is not None
    assert newer.revocations.node_ids == {"x", "y"}
    with pytest.raises(meshnet.CertificateError, match="not newer"):
        newer.with_revocations(net_a.revoke(node_ids=set(), sequence=6))


def test_trust_refuses_a_revocation_list_of_another_network(
    net_a: meshnet.NetworkIdentity, net_b: meshnet.NetworkIdentity
) -> None:
    with pytest.raises(meshnet.CertificateError, match="revocations are for network"):
        net_a.trust(revocations=net_b.revoke(sequence=1))


def test_federation_link_validates_permissions_and_secret(net_b: meshnet.NetworkIdentity) -> None:
    secret = meshnet.FederationLink.new_secret()
    link = net_b.federation_link({"spore.read", "blocks.read"}, secret)
    assert link.network_id == net_b.network_id
    assert secret.hex() not in repr(link)
    with pytest.raises(meshnet.CertificateError, match="permission"):
        net_b.federation_link({"Bad Permission"}, secret)
    with pytest.raises(meshnet.CertificateError, match="secret must be 32"):
        net_b.federation_link({"read"}, b"short")


def test_a_network_cannot_federate_with_itself(net_a: meshnet.NetworkIdentity) -> None:
    link = net_a.federation_link({"read"}, meshnet.FederationLink.new_secret())
    with pytest.raises(meshnet.CertificateError, match="itself"):
        net_a.trust(federations=[link])


def test_check_peer_reports_expired_revoked_and_foreign_certificates(
    net_a: meshnet.NetworkIdentity,
    net_b: meshnet.NetworkIdentity,
    member: Callable[..., meshnet.MeshCredentials],
) -> None:
    me = member(net_a)
    old = net_a.issue(
        meshnet.NodeIdentity.generate().public_key, not_before=dt.datetime(2020, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(meshnet.HandshakeError) as info:
        me.check_peer(old.der)
    assert info.value.reason == "expired"
    victim = net_a.issue(meshnet.NodeIdentity.generate().public_key)
    revoking = me.with_trust(me.trust.with_revocations(net_a.revoke(serials={victim.serial}, sequence=1)))
    with pytest.raises(meshnet.HandshakeError) as info:
        revoking.check_peer(victim.der)
    assert info.value.reason == "revoked"
    with pytest.raises(meshnet.HandshakeError) as info:
        me.check_peer(net_b.issue(meshnet.NodeIdentity.generate().public_key).der)
    assert info.value.reason == "wrong_network"
    with pytest.raises(meshnet.HandshakeError) as info:
        me.check_peer(b"\x30\x03garbage")
    assert info.value.reason == "bad_certificate"


def test_federated_peer_revoked_by_its_own_network_is_refused(
    net_a: meshnet.NetworkIdentity, net_b: meshnet.NetworkIdentity, member: Member
) -> None:
    secret = meshnet.FederationLink.new_secret()
    visitor = member(net_b)
    link = net_b.federation_link({"read"}, secret)
    me = member(net_a, trust=net_a.trust(federations=[link]))
    assert me.check_peer(visitor.certificate.der).peer.permissions == {"read"}
    revoked_link = link.with_revocations(net_b.revoke(node_ids={visitor.node_id}, sequence=1))
    me = me.with_trust(me.trust.with_federation(revoked_link))
    with pytest.raises(meshnet.HandshakeError) as info:
        me.check_peer(visitor.certificate.der)
    assert info.value.reason == "revoked"
    with pytest.raises(meshnet.CertificateError, match="federation revocations are for network"):
        meshnet.FederationLink(net_b.ca_certificate, {"read"}, secret, net_a.revoke(sequence=1))


def test_trust_file_keeps_federation_revocations(
    tmp_path: Path, net_a: meshnet.NetworkIdentity, net_b: meshnet.NetworkIdentity
) -> None:
    link = net_b.federation_link({"read"}, meshnet.FederationLink.new_secret())
    link = link.with_revocations(net_b.revoke(serials={42}, sequence=9))
    net_a.trust(federations=[link]).save(tmp_path / "trust.json")
    loaded = meshnet.NetworkTrust.load(tmp_path / "trust.json").federation(net_b.network_id)
    assert loaded is not None
    assert loaded.revocations is not None
    assert loaded.revocations.serials == {42}
