"""X.509 certificates of a network: the self-signed network CA and short-lived node certificates.

Both are Ed25519 and built with `cryptography`; OpenSSL checks the chain and validity during the TLS
handshake, and `check_node_certificate` re-checks what OpenSSL cannot know (the node id is the hash of
the certified key, the certificate is not revoked) before any byte reaches a protocol handler.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshnet._errors import CertificateError, IdentityError
from meshnet._identity import node_id_for

__all__ = [
    "NodeCertificate",
    "DEFAULT_NODE_CERT_VALIDITY",
    "DEFAULT_CA_VALIDITY",
    "MAX_CERTIFICATE_BYTES",
    "build_ca_certificate",
    "build_node_certificate",
    "ca_public_key",
    "utcnow",
]

DEFAULT_NODE_CERT_VALIDITY = dt.timedelta(days=3)
"""Short enough that a stolen node key stops working soon without a revocation list reaching every peer."""
DEFAULT_CA_VALIDITY = dt.timedelta(days=3650)
MAX_CERTIFICATE_BYTES = 16 * 1024
"""Our certificates are ~500 bytes; anything above this is refused before parsing."""
_CLOCK_SKEW = dt.timedelta(minutes=5)
"""Node certificates are back-dated by this much so peers with slightly slow clocks accept them."""
_URI_PREFIX = "mycelium://"
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, x509.InvalidVersion, UnsupportedAlgorithm)
"""What `cryptography` raises on malformed certificates (it parses lazily, so on any accessor)."""


def utcnow() -> dt.datetime:
    """The wall clock as an aware UTC datetime (the default clock of every expiry check)."""
    return dt.datetime.now(dt.UTC)


def _public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def build_ca_certificate(
    key: Ed25519PrivateKey, name: str, network_id: str, *, validity: dt.timedelta = DEFAULT_CA_VALIDITY
) -> bytes:
    """The network's self-signed CA certificate (DER): CN = network name, O = network id."""
    now = utcnow()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, network_id),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"{_URI_PREFIX}{network_id}")]),
            critical=False,
        )
        .sign(key, algorithm=None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def build_node_certificate(
    ca_key: Ed25519PrivateKey,
    ca_der: bytes,
    node_public_key: bytes,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> bytes:
    """A node certificate (DER) for ``node_public_key`` signed by the network CA key."""
    if not_after <= not_before:
        raise CertificateError(f"not_after ({not_after}) must be after not_before ({not_before})")
    try:
        public = Ed25519PublicKey.from_public_bytes(node_public_key)
    except ValueError as exc:
        raise IdentityError("node_public_key must be 32 raw Ed25519 bytes") from exc
    ca = x509.load_der_x509_certificate(ca_der)
    network_id = _network_id_of(ca)
    node_id = node_id_for(node_public_key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, network_id),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(node_id),
                    x509.UniformResourceIdentifier(f"{_URI_PREFIX}{network_id}/{node_id}"),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, algorithm=None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _network_id_of(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(values) != 1:
        raise CertificateError("certificate subject must carry exactly one O= attribute (the network id)")
    value = values[0].value
    return value if isinstance(value, str) else value.decode("ascii", "replace")


def _load_der(der: bytes) -> x509.Certificate:
    if not isinstance(der, bytes):
        raise CertificateError(f"certificate must be DER bytes, got {type(der).__name__}")
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise CertificateError(
            f"certificate is {len(der)} bytes; at most {MAX_CERTIFICATE_BYTES} are accepted"
        )
    try:
        return x509.load_der_x509_certificate(der)
    except _PARSE_ERRORS as exc:
        raise CertificateError("certificate is not valid DER X.509") from exc


def ca_public_key(ca_der: bytes) -> bytes:
    """The raw Ed25519 public key of a network CA certificate (checks it is a self-signed Ed25519 CA)."""
    cert = _load_der(ca_der)
    try:
        key = cert.public_key()
        if not isinstance(key, Ed25519PublicKey):
            raise CertificateError("network CA certificate must hold an Ed25519 key")
        key.verify(cert.signature, cert.tbs_certificate_bytes)
        raw = _public_raw(key)
        if node_id_for(raw) != _network_id_of(cert):
            raise CertificateError("network CA certificate's O= is not the id derived from its key")
    except InvalidSignature:
        raise CertificateError("network CA certificate is not self-signed by its own key") from None
    except _PARSE_ERRORS as exc:
        raise CertificateError(f"network CA certificate is malformed: {exc}") from None
    return raw


@attrs.frozen(repr=False)
class NodeCertificate:
    """A node certificate (DER) with its facts parsed once; public, safe to log and to send."""

    der: bytes = attrs.field(validator=attrs.validators.instance_of(bytes), repr=False)
    _cert: x509.Certificate = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        cert = _load_der(self.der)
        object.__setattr__(self, "_cert", cert)
        try:  # cryptography parses lazily: touch every part we read later, so errors surface here
            if not isinstance(cert.public_key(), Ed25519PublicKey):
                raise CertificateError("node certificate must certify an Ed25519 key")
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if len(cn) != 1 or cn[0].value != node_id_for(self.public_key):
                raise CertificateError("node certificate's CN is not the node id derived from its key")
            _network_id_of(cert)
            _ = (
                cert.serial_number,
                cert.not_valid_before_utc,
                cert.not_valid_after_utc,
                cert.tbs_certificate_bytes,
            )
            _ = cert.signature
        except _PARSE_ERRORS as exc:
            raise CertificateError(f"node certificate is malformed: {exc}") from None

    @classmethod
    def from_pem(cls, pem: bytes) -> NodeCertificate:
        """Parse a PEM node certificate."""
        if len(pem) > 2 * MAX_CERTIFICATE_BYTES:
            raise CertificateError(f"PEM certificate is {len(pem)} bytes; too large to be a node certificate")
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except _PARSE_ERRORS as exc:
            raise CertificateError("not a PEM X.509 certificate") from exc
        return cls(cert.public_bytes(serialization.Encoding.DER))

    @property
    def pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def public_key(self) -> bytes:
        key = self._cert.public_key()
        assert isinstance(key, Ed25519PublicKey)  # checked in __attrs_post_init__
        return _public_raw(key)

    @property
    def node_id(self) -> str:
        return node_id_for(self.public_key)

    @property
    def network_id(self) -> str:
        return _network_id_of(self._cert)

    @property
    def serial(self) -> int:
        return self._cert.serial_number

    @property
    def not_before(self) -> dt.datetime:
        return self._cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self._cert.not_valid_after_utc

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the DER: what the isolation proof binds to."""
        return hashlib.sha256(self.der).digest()

    def renew_at(self, fraction: float = 2 / 3) -> dt.datetime:
        """When to fetch a fresh certificate: after ``fraction`` of the lifetime (cert-manager's 2/3)."""
        if not 0.0 < fraction < 1.0:
            raise CertificateError(f"renewal fraction must be in (0, 1), got {fraction}")
        return self.not_before + (self.not_after - self.not_before) * fraction

    def needs_renewal(self, now: dt.datetime | None = None, fraction: float = 2 / 3) -> bool:
        """True once `renew_at` has passed (and forever after, including once expired)."""
        return (now or utcnow()) >= self.renew_at(fraction)

    def __repr__(self) -> str:
        return (
            f"NodeCertificate(node_id={self.node_id!r}, network_id={self.network_id!r}, "
            f"serial={self.serial:x}, not_after={self.not_after.isoformat()})"
        )

    def is_valid_at(self, now: dt.datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def signed_by(self, ca_public: bytes) -> bool:
        """True when the network CA key ``ca_public`` signed this certificate."""
        try:
            Ed25519PublicKey.from_public_bytes(ca_public).verify(
                self._cert.signature, self._cert.tbs_certificate_bytes
            )
        except (InvalidSignature, ValueError):
            return False
        return True
