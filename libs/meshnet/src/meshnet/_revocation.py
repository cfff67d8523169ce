"""Revocation lists: the network key's signed statement that some node certificates are dead.

Expiry alone bounds how long a stolen node key works (see `DEFAULT_NODE_CERT_VALIDITY`); a
revocation list ends it now. The list is signed over its exact encoded bytes, so verification never
depends on re-encoding, and a newer list (higher ``sequence``) replaces an older one.
"""

from __future__ import annotations

import datetime as dt

import attrs

from meshnet._certs import NodeCertificate
from meshnet._codec import decode_message
from meshnet._errors import CertificateError, DecodeError
from meshnet._identity import node_id_for, verify_signature
from meshnet._pb.meshnet.v1 import RevocationBody, SignedRevocationList

__all__ = ["RevocationList", "MAX_REVOCATION_LIST_BYTES", "MAX_REVOKED_ENTRIES"]

MAX_REVOCATION_LIST_BYTES = 4 * 1024 * 1024
MAX_REVOKED_ENTRIES = 100_000
_MAX_SERIAL_HEX = 40  # X.509 serials are at most 20 bytes


@attrs.frozen
class RevocationList:
    """Revoked node ids and certificate serials of one network, signed by its CA key."""

    network_id: str
    sequence: int
    issued_at: dt.datetime
    node_ids: frozenset[str]
    serials: frozenset[int]
    signed: bytes = attrs.field(repr=False)
    """The encoded `SignedRevocationList` exactly as signed; what `to_bytes` returns."""

    def is_revoked(self, certificate: NodeCertificate) -> bool:
        return certificate.node_id in self.node_ids or certificate.serial in self.serials

    def to_bytes(self) -> bytes:
        return self.signed

    @classmethod
    def from_bytes(cls, data: bytes, ca_public_key: bytes) -> RevocationList:
        """Decode and verify a list; raises `DecodeError` if malformed, `CertificateError` if badly signed."""
        outer = decode_message(SignedRevocationList, data, max_bytes=MAX_REVOCATION_LIST_BYTES)
        if not verify_signature(ca_public_key, outer.signature, outer.body):
            raise CertificateError("revocation list is not signed by this network's CA key")
        body = decode_message(RevocationBody, outer.body, max_bytes=MAX_REVOCATION_LIST_BYTES)
        if body.network_id != node_id_for(ca_public_key):
            raise CertificateError(
                f"revocation list is for network {body.network_id!r}, expected {node_id_for(ca_public_key)!r}"
            )
        if len(body.node_ids) + len(body.serials) > MAX_REVOKED_ENTRIES:
            raise DecodeError(f"revocation list has more than {MAX_REVOKED_ENTRIES} entries")
        serials: set[int] = set()
        for text in body.serials:
            if not text or len(text) > _MAX_SERIAL_HEX:
                raise DecodeError(
                    f"revocation list serial {text[:50]!r} is not 1-{_MAX_SERIAL_HEX} hex digits"
                )
            try:
                serials.add(int(text, 16))
            except ValueError:
                raise DecodeError(f"revocation list serial {text[:50]!r} is not hexadecimal") from None
        try:
            issued = dt.datetime.fromtimestamp(body.issued_at_unix, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise DecodeError(
                f"revocation list issued_at_unix {body.issued_at_unix} is out of range"
            ) from None
        return cls(
            network_id=body.network_id,
            sequence=body.sequence,
            issued_at=issued,
            node_ids=frozenset(body.node_ids),
            serials=frozenset(serials),
            signed=bytes(data),
        )

    @staticmethod
    def encode_body(
        network_id: str,
        sequence: int,
        issued_at: dt.datetime,
        node_ids: frozenset[str],
        serials: frozenset[int],
    ) -> bytes:
        """The bytes the network key signs (used by `NetworkIdentity.revoke`)."""
        return bytes(
            RevocationBody(
                network_id=network_id,
                sequence=sequence,
                issued_at_unix=int(issued_at.timestamp()),
                node_ids=sorted(node_ids),
                serials=[f"{s:x}" for s in sorted(serials)],
            )
        )

    @staticmethod
    def wrap(body: bytes, signature: bytes) -> bytes:
        return bytes(SignedRevocationList(body=body, signature=signature))
