"""Network identity: the network's CA key pair and its isolation key.

Creating a network = generating both. The CA key signs node certificates and revocation lists; the
isolation key is a 32-byte secret every member proves it knows on every connection, so a stolen or
mis-issued certificate alone never gets a peer in.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnet._certs import (
    _CLOCK_SKEW,
    DEFAULT_NODE_CERT_VALIDITY,
    NodeCertificate,
    build_ca_certificate,
    build_node_certificate,
    ca_public_key,
    utcnow,
)
from meshnet._errors import IdentityError, KeyFileError
from meshnet._identity import NodeIdentity, check_private_key, node_id_for
from meshnet._keyfile import RedactedRepr, write_secret_file
from meshnet._revocation import RevocationList
from meshnet._trust import SECRET_BYTES, FederationLink, NetworkTrust, _b64, _load_json, _unb64

if TYPE_CHECKING:
    from meshnet._credentials import MeshCredentials

__all__ = ["NetworkIdentity"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FORMAT = "mycelium-network-identity-v1"


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise IdentityError(f"network name {value!r} must match {_NAME.pattern} (letters, digits, . _ -)")


@attrs.frozen(repr=False, eq=False)
class NetworkIdentity(RedactedRepr):
    """A network's CA key pair, isolation key and self-signed CA certificate (all secret but the cert)."""

    name: str = attrs.field(validator=_check_name)
    _private_key: Ed25519PrivateKey = attrs.field(validator=check_private_key, alias="private_key")
    _isolation_key: bytes = attrs.field(alias="isolation_key")
    ca_certificate: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    """DER of the self-signed CA certificate; public, handed to every member and federated network."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self._isolation_key, bytes) or len(self._isolation_key) != SECRET_BYTES:
            raise IdentityError(f"isolation_key must be {SECRET_BYTES} random bytes")
        if ca_public_key(self.ca_certificate) != self.public_key:
            raise IdentityError("ca_certificate does not certify this network's key")

    @classmethod
    def generate(cls, name: str) -> NetworkIdentity:
        """A brand-new network named ``name``: fresh CA key, isolation key and CA certificate."""
        _check_name(None, None, name)
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ca = build_ca_certificate(key, name, node_id_for(raw))
        return cls(
            name=name, private_key=key, isolation_key=secrets.token_bytes(SECRET_BYTES), ca_certificate=ca
        )

    @property
    def public_key(self) -> bytes:
        return self._private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def network_id(self) -> str:
        """Derived from the CA public key like a node id: two networks named alike still differ."""
        return node_id_for(self.public_key)

    @property
    def isolation_key(self) -> bytes:
        """The 32-byte secret members prove on every connection. Never log it."""
        return self._isolation_key

    def sign(self, data: bytes) -> bytes:
        if not isinstance(data, bytes):
            raise IdentityError(f"data to sign must be bytes, got {type(data).__name__}")
        return self._private_key.sign(data)

    def issue(
        self,
        node_public_key: bytes,
        *,
        validity: dt.timedelta = DEFAULT_NODE_CERT_VALIDITY,
        not_before: dt.datetime | None = None,
    ) -> NodeCertificate:
        """A certificate for ``node_public_key`` valid for ``validity`` from ``not_before`` (default: now,
        back-dated 5 minutes for clock skew). Renew with another `issue` once `needs_renewal` says so."""
        start = not_before if not_before is not None else utcnow() - _CLOCK_SKEW
        der = build_node_certificate(
            self._private_key,
            self.ca_certificate,
            node_public_key,
            not_before=start,
            not_after=start + validity,
        )
        return NodeCertificate(der)

    def revoke(
        self,
        *,
        node_ids: Iterable[str] = (),
        serials: Iterable[int] = (),
        sequence: int,
        issued_at: dt.datetime | None = None,
    ) -> RevocationList:
        """A signed revocation list; ``sequence`` must grow with each list you publish."""
        if sequence < 0:
            raise IdentityError(f"sequence must be >= 0, got {sequence}")
        body = RevocationList.encode_body(
            self.network_id, sequence, issued_at or utcnow(), frozenset(node_ids), frozenset(serials)
        )
        return RevocationList.from_bytes(RevocationList.wrap(body, self.sign(body)), self.public_key)

    def trust(
        self, *, revocations: RevocationList | None = None, federations: Iterable[FederationLink] = ()
    ) -> NetworkTrust:
        """What a member needs to know about this network (no CA private key)."""
        return NetworkTrust(
            ca_certificate=self.ca_certificate,
            isolation_key=self._isolation_key,
            name=self.name,
            revocations=revocations,
            federations=federations,
        )

    def federation_link(self, permissions: Iterable[str], secret: bytes) -> FederationLink:
        """The link another network configures to trust THIS network for ``permissions``."""
        return FederationLink(self.ca_certificate, frozenset(permissions), secret)

    def credentials_for(self, identity: NodeIdentity, **options: Any) -> MeshCredentials:
        """Enrol ``identity`` in one step (issue + trust): for local setups and tests, where the
        administrator holds the node key. Extra ``options`` go to `MeshCredentials`."""
        from meshnet._credentials import MeshCredentials

        return MeshCredentials(identity, self.issue(identity.public_key), self.trust(), **options)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write CA key, isolation key and CA certificate to ``path`` (JSON, mode 0600)."""
        raw = self._private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        doc = {
            "format": _FORMAT,
            "name": self.name,
            "private_key": _b64(raw),
            "isolation_key": _b64(self._isolation_key),
            "ca_certificate": _b64(self.ca_certificate),
        }
        write_secret_file(path, json.dumps(doc, indent=2).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NetworkIdentity:
        """Read a file written by `save`; refuses it when its permissions are looser than 0600."""
        doc = _load_json(path, _FORMAT)
        try:
            raw = _unb64(doc["private_key"])
            if len(raw) != 32:
                raise ValueError("private_key must be 32 bytes")
            return cls(
                name=doc["name"],
                private_key=Ed25519PrivateKey.from_private_bytes(raw),
                isolation_key=_unb64(doc["isolation_key"]),
                ca_certificate=_unb64(doc["ca_certificate"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyFileError(f"network file {str(path)!r} is malformed: {type(exc).__name__}") from None

    def __repr__(self) -> str:
        return f"NetworkIdentity(name={self.name!r}, network_id={self.network_id!r})"

    def __getstate__(self) -> None:
        raise TypeError("NetworkIdentity holds secret keys and cannot be pickled; use save()/load()")
