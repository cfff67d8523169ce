"""Spore records: a node's signed self-description, and their canonical (signed) encoding.

The signature covers a canonical encoding that we define ourselves rather than the protobuf
bytes: protobuf encoders may legally differ in field order and default handling, and a signature
must not depend on which encoder produced the bytes. The canonical form is a domain-separated
sequence of length-prefixed fields in a fixed order.
"""

from __future__ import annotations

import enum
import struct

import attrs

from spore._errors import ConfigError
from spore._identity import Signer, default_node_id

__all__ = ["Capabilities", "RecordLimits", "Role", "SporeRecord", "build_record"]

_DOMAIN = b"mycelium.spore.v1.record\x00"


class Role(enum.Enum):
    """What a node is in the network (ARCHITECTURE.md glossary). Values match the wire enum."""

    SCLEROTIUM = 1
    RHIZOMORPH = 2
    HYPHA = 3


@attrs.frozen(cache_hash=True)  # part of every decode-cache key
class RecordLimits:
    """Bounds every decoder applies to network input (checked before and after parsing)."""

    max_record_bytes: int = attrs.field(default=4096, validator=attrs.validators.ge(256))
    max_addresses: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    max_services: int = attrs.field(default=64, validator=attrs.validators.ge(0))
    max_string: int = attrs.field(default=255, validator=attrs.validators.ge(16))


_NONNEG = attrs.validators.ge(0)


@attrs.frozen
class Capabilities:
    """What a node offers. Zero means "not advertised"."""

    cpu_millicores: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int), _NONNEG])
    memory_bytes: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int), _NONNEG])
    storage_bytes: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int), _NONNEG])
    bandwidth_bps: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int), _NONNEG])


def _str_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"expected a list of strings, got {type(value).__name__}")
    return tuple(value)


@attrs.frozen(cache_hash=True)  # a cache key on the gossip hot path (see _codec)
class SporeRecord:
    """A node's record. Immutable; a change means a new record with a higher incarnation.

    `expires_at` is a wall-clock time in seconds (the same clock every validator is given);
    `signature` is by the node's key, `network_signature` by the network key (Sclerotia only).
    """

    node_id: str
    public_key: bytes
    network_id: str
    role: Role
    addresses: tuple[str, ...] = attrs.field(converter=_str_tuple)
    capabilities: Capabilities
    services: tuple[str, ...] = attrs.field(converter=_str_tuple)
    incarnation: int
    expires_at_ms: int
    signature: bytes = b""
    network_signature: bytes = b""

    @property
    def expires_at(self) -> float:
        return self.expires_at_ms / 1000.0

    def canonical_bytes(self) -> bytes:
        """The exact bytes both signatures cover (everything but the signatures)."""
        out = bytearray(_DOMAIN)

        def put(b: bytes) -> None:
            out.extend(struct.pack(">I", len(b)))
            out.extend(b)

        put(self.node_id.encode())
        put(self.public_key)
        put(self.network_id.encode())
        out.extend(struct.pack(">B", self.role.value))
        out.extend(struct.pack(">I", len(self.addresses)))
        for a in self.addresses:
            put(a.encode())
        c = self.capabilities
        out.extend(struct.pack(">QQQQ", c.cpu_millicores, c.memory_bytes, c.storage_bytes, c.bandwidth_bps))
        out.extend(struct.pack(">I", len(self.services)))
        for s in self.services:
            put(s.encode())
        out.extend(struct.pack(">QQ", self.incarnation, self.expires_at_ms))
        return bytes(out)

    def supersedes(self, other: SporeRecord) -> bool:
        """Newer than `other` for the same node: higher incarnation wins."""
        return self.incarnation > other.incarnation


def build_record(
    signer: Signer,
    *,
    network_id: str,
    role: Role,
    addresses: tuple[str, ...] | list[str] = (),
    capabilities: Capabilities | None = None,
    services: tuple[str, ...] | list[str] = (),
    incarnation: int,
    expires_at: float,
    network_signer: Signer | None = None,
    node_id: str | None = None,
) -> SporeRecord:
    """Build and sign a record for `signer`'s node (countersigned when `network_signer` is given).

    `node_id` defaults to the id derived from the public key; pass meshnet's id if you use its
    derivation, and give validators the same function.
    """
    if incarnation < 0 or incarnation >= 2**64:
        raise ConfigError(f"incarnation must be in [0, 2**64), got {incarnation}")
    if expires_at < 0:
        raise ConfigError(f"expires_at must be a non-negative wall-clock time, got {expires_at}")
    if role is Role.SCLEROTIUM and network_signer is None:
        raise ConfigError("role=SCLEROTIUM needs network_signer: Sclerotia are countersigned by the network")
    unsigned = SporeRecord(
        node_id=node_id if node_id is not None else default_node_id(signer.public_key),
        public_key=signer.public_key,
        network_id=network_id,
        role=role,
        addresses=tuple(addresses),
        capabilities=capabilities or Capabilities(),
        services=tuple(services),
        incarnation=incarnation,
        expires_at_ms=round(expires_at * 1000),
    )
    body = unsigned.canonical_bytes()
    return attrs.evolve(
        unsigned,
        signature=signer.sign(body),
        network_signature=network_signer.sign(body) if network_signer is not None else b"",
    )
