"""Seed Spores: signed entry points. The Master Seed Spore founds a network (signed by the network
key); a Service Seed Spore gives one service's identity and entry points (signed by the service's
key, itself listed in the Master). Seed data is one-way: it tells a node where to knock, and its
bootstrap records are not merged into any view until a connection to them is confirmed.
"""

from __future__ import annotations

import struct

import attrs

from spore._codec import decode_record, encode_record
from spore._errors import DecodeError
from spore._identity import Signer, verify_ed25519
from spore._pb.spore import v1 as pb
from spore._record import RecordLimits, SporeRecord

__all__ = ["SeedSpore", "build_seed", "decode_seed", "encode_seed"]

_DOMAIN = b"mycelium.spore.v1.seed\x00"
_MAX_SEED_BYTES = 64 * 1024
_MAX_ENTRY_POINTS = 64
_MAX_BOOTSTRAP = 64


@attrs.frozen
class SeedSpore:
    """`service == ""` is the Master Seed Spore of `network_id`."""

    network_id: str
    service: str
    service_public_key: bytes
    entry_points: tuple[str, ...]
    bootstrap: tuple[SporeRecord, ...]
    issued_at_ms: int
    expires_at_ms: int
    signature: bytes = b""

    @property
    def is_master(self) -> bool:
        return self.service == ""

    def canonical_bytes(self) -> bytes:
        out = bytearray(_DOMAIN)
        for part in (self.network_id.encode(), self.service.encode(), self.service_public_key):
            out += struct.pack(">I", len(part)) + part
        out += struct.pack(">I", len(self.entry_points))
        for e in self.entry_points:
            out += struct.pack(">I", len(e.encode())) + e.encode()
        out += struct.pack(">I", len(self.bootstrap))
        for r in self.bootstrap:
            body = r.canonical_bytes() + r.signature
            out += struct.pack(">I", len(body)) + body
        out += struct.pack(">QQ", self.issued_at_ms, self.expires_at_ms)
        return bytes(out)

    def verify(self, signer_public_key: bytes, now: float) -> bool:
        """Signed by `signer_public_key` (the network key for a Master) and not expired."""
        return self.expires_at_ms / 1000 > now and verify_ed25519(
            signer_public_key, self.signature, self.canonical_bytes()
        )


def build_seed(
    signer: Signer,
    *,
    network_id: str,
    service: str = "",
    service_public_key: bytes = b"",
    entry_points: tuple[str, ...] | list[str] = (),
    bootstrap: tuple[SporeRecord, ...] | list[SporeRecord] = (),
    issued_at: float,
    ttl: float,
) -> SeedSpore:
    seed = SeedSpore(
        network_id,
        service,
        service_public_key or signer.public_key,
        tuple(entry_points),
        tuple(bootstrap),
        round(issued_at * 1000),
        round((issued_at + ttl) * 1000),
    )
    return attrs.evolve(seed, signature=signer.sign(seed.canonical_bytes()))


def encode_seed(seed: SeedSpore) -> bytes:
    return bytes(
        pb.SeedSpore(
            network_id=seed.network_id,
            service=seed.service,
            service_public_key=seed.service_public_key,
            entry_points=list(seed.entry_points),
            bootstrap=[pb.SporeRecord().parse(encode_record(r)) for r in seed.bootstrap],
            issued_at_ms=seed.issued_at_ms,
            expires_at_ms=seed.expires_at_ms,
            signature=seed.signature,
        )
    )


def decode_seed(data: bytes, limits: RecordLimits | None = None) -> SeedSpore:
    """Decode a Seed Spore from untrusted bytes (bounded; raises only `DecodeError`)."""
    if len(data) > _MAX_SEED_BYTES:
        raise DecodeError(f"seed spore is {len(data)} bytes, at most {_MAX_SEED_BYTES} allowed", "oversized")
    try:
        m = pb.SeedSpore().parse(data)
        if len(m.entry_points) > _MAX_ENTRY_POINTS or len(m.bootstrap) > _MAX_BOOTSTRAP:
            raise DecodeError("seed spore lists too many entry points or bootstrap records", "oversized")
        records = tuple(decode_record(bytes(r), limits) for r in m.bootstrap)
        return SeedSpore(
            m.network_id,
            m.service,
            bytes(m.service_public_key),
            tuple(m.entry_points),
            records,
            m.issued_at_ms,
            m.expires_at_ms,
            bytes(m.signature),
        )
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"malformed seed spore: {type(exc).__name__}") from None
