"""What a member node knows about its network (no CA private key) and its federation links."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterable
from typing import Any

import attrs

from meshnet._certs import ca_public_key
from meshnet._errors import CertificateError, KeyFileError
from meshnet._identity import node_id_for
from meshnet._keyfile import RedactedRepr, read_secret_file, write_secret_file
from meshnet._revocation import RevocationList

__all__ = ["NetworkTrust", "FederationLink", "ALL_PERMISSIONS", "SECRET_BYTES"]

SECRET_BYTES = 32
ALL_PERMISSIONS = frozenset({"*"})
"""The permissions of a peer of one's own network: everything. Federated peers get their link's set."""
_PERMISSION = re.compile(r"^(\*|[a-z][a-z0-9_.:-]{0,63})$")
_TRUST_FORMAT = "mycelium-network-trust-v1"


def _check_secret(_instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != SECRET_BYTES:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise CertificateError(f"{attribute.name} must be {SECRET_BYTES} random bytes, got {got}")


def _to_permissions(values: Iterable[str]) -> frozenset[str]:
    perms = frozenset(values)
    for p in perms:
        if not isinstance(p, str) or not _PERMISSION.match(p):
            raise CertificateError(f"permission {p!r} must be '*' or match {_PERMISSION.pattern}")
    return perms


@attrs.frozen
class FederationLink(RedactedRepr):
    """Trust in another network's CA for a named set of permissions, plus the link's shared secret.

    Choice: a federated connection proves knowledge of this *federation secret* (same HMAC handshake
    as the isolation key), so neither network reveals its isolation key to the other and a CA key
    alone is not enough to get in. Both networks configure a link to each other with the same secret;
    each side's ``permissions`` say what IT grants the OTHER network's nodes.
    """

    ca_certificate: bytes = attrs.field(validator=attrs.validators.instance_of(bytes), repr=False)
    permissions: frozenset[str] = attrs.field(converter=_to_permissions)
    secret: bytes = attrs.field(validator=_check_secret, repr=False)
    revocations: RevocationList | None = None
    """The other network's own revocation list, if it shares one with us (checked like ours)."""
    network_id: str = attrs.field(init=False)
    ca_public_key: bytes = attrs.field(init=False, repr=False, eq=False)
    """Raw Ed25519 key of the other network's CA (parsed and self-signature checked once)."""

    def __attrs_post_init__(self) -> None:
        public = ca_public_key(self.ca_certificate)
        object.__setattr__(self, "ca_public_key", public)
        object.__setattr__(self, "network_id", node_id_for(public))
        if self.revocations is not None and self.revocations.network_id != self.network_id:
            raise CertificateError(
                f"federation revocations are for network {self.revocations.network_id!r}, "
                f"expected {self.network_id!r}"
            )

    def with_revocations(self, revocations: RevocationList) -> FederationLink:
        """This link with the other network's newer revocation list (older or equal sequence refused)."""
        if self.revocations is not None and revocations.sequence <= self.revocations.sequence:
            raise CertificateError(
                f"revocation list sequence {revocations.sequence} is not newer than {self.revocations.sequence}"
            )
        return attrs.evolve(self, revocations=revocations)

    @staticmethod
    def new_secret() -> bytes:
        """32 fresh random bytes to share (out of band) with the other network's administrator."""
        return secrets.token_bytes(SECRET_BYTES)


def _to_links(values: Iterable[FederationLink]) -> tuple[FederationLink, ...]:
    links = tuple(values)
    for link in links:
        if not isinstance(link, FederationLink):
            raise CertificateError(f"federations must hold FederationLink objects, got {type(link).__name__}")
    return links


@attrs.frozen
class NetworkTrust(RedactedRepr):
    """A member's knowledge of its network: CA certificate, isolation key, revocations, federations."""

    ca_certificate: bytes = attrs.field(validator=attrs.validators.instance_of(bytes), repr=False)
    isolation_key: bytes = attrs.field(validator=_check_secret, repr=False)
    name: str = ""
    revocations: RevocationList | None = None
    federations: tuple[FederationLink, ...] = attrs.field(default=(), converter=_to_links)
    network_id: str = attrs.field(init=False)
    ca_public_key: bytes = attrs.field(init=False, repr=False, eq=False)
    """Raw Ed25519 key of the network CA (parsed and self-signature checked once)."""

    def __attrs_post_init__(self) -> None:
        public = ca_public_key(self.ca_certificate)
        network_id = node_id_for(public)
        object.__setattr__(self, "ca_public_key", public)
        object.__setattr__(self, "network_id", network_id)
        if self.revocations is not None and self.revocations.network_id != network_id:
            raise CertificateError(
                f"revocations are for network {self.revocations.network_id!r}, expected {network_id!r}"
            )
        seen: set[str] = set()
        for link in self.federations:
            if link.network_id == network_id:
                raise CertificateError("a network cannot federate with itself")
            if link.network_id in seen:
                raise CertificateError(f"two federation links for network {link.network_id!r}")
            seen.add(link.network_id)

    def federation(self, network_id: str) -> FederationLink | None:
        """The link to ``network_id``, or None when that network is not federated."""
        return next((link for link in self.federations if link.network_id == network_id), None)

    def with_revocations(self, revocations: RevocationList) -> NetworkTrust:
        """This trust with a newer revocation list (an older or equal sequence is refused)."""
        if self.revocations is not None and revocations.sequence <= self.revocations.sequence:
            raise CertificateError(
                f"revocation list sequence {revocations.sequence} is not newer than {self.revocations.sequence}"
            )
        return attrs.evolve(self, revocations=revocations)

    def with_federation(self, link: FederationLink) -> NetworkTrust:
        """This trust plus (or with a replaced) federation link."""
        others = tuple(f for f in self.federations if f.network_id != link.network_id)
        return attrs.evolve(self, federations=(*others, link))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` (JSON, mode 0600: it holds the isolation key and federation secrets)."""
        doc: dict[str, Any] = {
            "format": _TRUST_FORMAT,
            "name": self.name,
            "ca_certificate": _b64(self.ca_certificate),
            "isolation_key": _b64(self.isolation_key),
            "revocations": _b64(self.revocations.to_bytes()) if self.revocations else None,
            "federations": [
                {
                    "ca_certificate": _b64(f.ca_certificate),
                    "permissions": sorted(f.permissions),
                    "secret": _b64(f.secret),
                    "revocations": _b64(f.revocations.to_bytes()) if f.revocations else None,
                }
                for f in self.federations
            ],
        }
        write_secret_file(path, json.dumps(doc, indent=2).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NetworkTrust:
        doc = _load_json(path, _TRUST_FORMAT)
        try:
            ca = _unb64(doc["ca_certificate"])
            revocations = (
                RevocationList.from_bytes(_unb64(doc["revocations"]), ca_public_key(ca))
                if doc["revocations"]
                else None
            )
            links = [_load_link(f) for f in doc["federations"]]
            return cls(ca, _unb64(doc["isolation_key"]), str(doc["name"]), revocations, links)
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyFileError(f"trust file {str(path)!r} is malformed: {type(exc).__name__} {exc}") from None


def _load_link(doc: dict[str, Any]) -> FederationLink:
    ca = _unb64(doc["ca_certificate"])
    raw = doc.get("revocations")
    revocations = RevocationList.from_bytes(_unb64(raw), ca_public_key(ca)) if raw else None
    return FederationLink(ca, doc["permissions"], _unb64(doc["secret"]), revocations)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"expected base64 text, got {type(text).__name__}")
    return base64.b64decode(text, validate=True)


def _load_json(path: str | os.PathLike[str], fmt: str) -> dict[str, Any]:
    try:
        doc = json.loads(read_secret_file(path))
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"file {str(path)!r} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise KeyFileError(f"file {str(path)!r} is not a {fmt} file")
    return doc
