"""MeshCredentials: one node's key, certificate and network trust, turned into TLS 1.3 contexts.

OpenSSL enforces on both sides: TLS 1.3 only, a certificate is required, and it must chain to our
network CA or to a federated network's CA and be within its validity period. `check_peer` then
re-checks, in Python, what OpenSSL cannot: node id bound to the key, revocation, and which secret
(isolation key or federation secret) the peer must prove.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshnet._certs import NodeCertificate, utcnow
from meshnet._codec import DEFAULT_MAX_FRAME_SIZE
from meshnet._errors import CertificateError, HandshakeError
from meshnet._identity import NodeIdentity
from meshnet._keyfile import RedactedRepr
from meshnet._peer import PeerInfo
from meshnet._trust import ALL_PERMISSIONS, NetworkTrust

__all__ = ["MeshCredentials", "PeerCheck"]


@attrs.frozen
class PeerCheck(RedactedRepr):
    """A peer certificate that passed `MeshCredentials.check_peer`: who it is and the secret to prove."""

    peer: PeerInfo
    certificate: NodeCertificate
    secret: bytes = attrs.field(repr=False)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _frame_size(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1024 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{attribute.name} must be in [1024, 2**32-1], got {value}")


@attrs.frozen(repr=False)
class MeshCredentials(RedactedRepr):
    """Everything a node needs to connect and accept: identity, certificate, trust, transport limits.

    ``clock`` is injected (aware UTC datetimes) so expiry checks are testable.
    """

    identity: NodeIdentity = attrs.field(validator=attrs.validators.instance_of(NodeIdentity))
    certificate: NodeCertificate = attrs.field(validator=attrs.validators.instance_of(NodeCertificate))
    trust: NetworkTrust = attrs.field(validator=attrs.validators.instance_of(NetworkTrust))
    max_frame_size: int = attrs.field(default=DEFAULT_MAX_FRAME_SIZE, validator=_frame_size)
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    clock: Callable[[], dt.datetime] = utcnow
    _contexts: dict[tuple[bool, tuple[str, ...]], ssl.SSLContext] = attrs.field(
        init=False, factory=dict, eq=False
    )

    def __attrs_post_init__(self) -> None:
        if self.certificate.public_key != self.identity.public_key:
            raise CertificateError(
                f"certificate is for node {self.certificate.node_id!r}, not for {self.identity.node_id!r}"
            )
        if self.certificate.network_id != self.trust.network_id or not self.certificate.signed_by(
            self.trust.ca_public_key
        ):
            raise CertificateError(f"certificate is not signed by network {self.trust.network_id!r}")

    def __repr__(self) -> str:
        return f"MeshCredentials(node_id={self.node_id!r}, network_id={self.network_id!r})"

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    @property
    def network_id(self) -> str:
        return self.trust.network_id

    def renewed(self, certificate: NodeCertificate) -> MeshCredentials:
        """The same credentials with a fresh certificate (same key)."""
        return attrs.evolve(self, certificate=certificate)

    def with_trust(self, trust: NetworkTrust) -> MeshCredentials:
        """The same credentials with updated trust (new revocation list, federation links)."""
        return attrs.evolve(self, trust=trust)

    def ssl_context(self, *, server_side: bool, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """A TLS 1.3-only context presenting our certificate and requiring a peer certificate that
        chains to our CA or a federated CA. Built once per credentials object (they are immutable)."""
        key = (server_side, alpn)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._build_context(server_side, alpn)
            self._contexts[key] = ctx
        return ctx

    def _build_context(self, server_side: bool, alpn: tuple[str, ...]) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        if not server_side:
            ctx.check_hostname = False  # peers are named by node id, checked by check_peer / connect()
        ctx.verify_mode = ssl.CERT_REQUIRED
        if server_side:
            ctx.options |= ssl.OP_NO_TICKET  # no resumption: every connection presents its certificate
        cas = [self.trust.ca_certificate, *(f.ca_certificate for f in self.trust.federations)]
        ctx.load_verify_locations(cadata="".join(_pem(der) for der in cas))
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        with _key_material(self.certificate.pem, self.identity.private_key_pem()) as (cert_path, key_path):
            ctx.load_cert_chain(cert_path, key_path)
        return ctx

    def check_peer(self, der: bytes | None) -> PeerCheck:
        """Verify a peer certificate beyond what OpenSSL did; raises `HandshakeError` with a reason."""
        if not der:
            raise HandshakeError("bad_certificate", "peer presented no certificate")
        try:
            cert = NodeCertificate(der)
        except CertificateError as exc:
            raise HandshakeError("bad_certificate", str(exc)) from None
        now = self.clock()
        if cert.network_id == self.trust.network_id and cert.signed_by(self.trust.ca_public_key):
            revocations = self.trust.revocations
            if revocations is not None and revocations.is_revoked(cert):
                raise HandshakeError(
                    "revoked", f"certificate {cert.serial:x} of node {cert.node_id} is revoked"
                )
            secret, permissions, federated = self.trust.isolation_key, ALL_PERMISSIONS, False
        else:
            link = self.trust.federation(cert.network_id)
            if link is None or not cert.signed_by(link.ca_public_key):
                raise HandshakeError(
                    "wrong_network",
                    f"node {cert.node_id} belongs to network {cert.network_id!r}, which is neither "
                    f"{self.trust.network_id!r} nor federated with it",
                )
            if link.revocations is not None and link.revocations.is_revoked(cert):
                raise HandshakeError(
                    "revoked", f"certificate {cert.serial:x} of node {cert.node_id} is revoked by its network"
                )
            secret, permissions, federated = link.secret, link.permissions, True
        if not cert.is_valid_at(now):
            raise HandshakeError(
                "expired",
                f"certificate of node {cert.node_id} is valid {cert.not_before} .. {cert.not_after}",
            )
        peer = PeerInfo(cert.node_id, cert.network_id, permissions, cert.public_key, federated)
        return PeerCheck(peer, cert, secret)


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode("ascii")


@contextlib.contextmanager
def _key_material(cert_pem: bytes, key_pem: bytes) -> Iterator[tuple[str, str]]:
    """Hand key material to `SSLContext.load_cert_chain`, which only reads paths.

    Prefers anonymous memory files (Linux memfd) so the private key never touches a disk; elsewhere a
    0700 temporary directory removed right after loading.
    """
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fds = [memfd("meshnet-cert"), memfd("meshnet-key")]
        try:
            for fd, data in zip(fds, (cert_pem, key_pem), strict=True):
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="meshnet-") as tmp:  # pragma: no cover - non-Linux
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        yield cert_path, key_path
