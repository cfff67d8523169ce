"""Signing keys behind a tiny protocol, so meshnet's `NodeIdentity`/`NetworkIdentity` plug in.

spore only needs "who signs" (`Signer`: a raw 32-byte Ed25519 public key and `sign`) and a pure
verification function. `Ed25519Signer` is a small self-contained implementation on `cryptography`
for users of spore alone and for tests; anything with the same two members works.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["Ed25519Signer", "Signer", "default_node_id", "verify_ed25519"]


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign for a node or a network with Ed25519."""

    @property
    def public_key(self) -> bytes:
        """Raw 32-byte Ed25519 public key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """64-byte Ed25519 signature over `data`."""
        ...


class Ed25519Signer:
    """An in-memory Ed25519 key pair. The private key is never printed or logged (no repr of it)."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        """Deterministic key from 32 bytes (simulations and tests need reproducible identities)."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"Ed25519Signer(public_key={self._public.hex()[:16]}…)"


def default_node_id(public_key: bytes) -> str:
    """Stable node id derived from the public key, so a node cannot claim another node's id.

    Same derivation as meshnet's `node_id_for` (lowercase base32 of SHA-256, 26 characters), so
    the ids spore checks are the ids meshnet's authenticated transport reports.
    """
    return base64.b32encode(hashlib.sha256(public_key).digest()).decode("ascii").lower()[:26]


# Verification is a pure function of (key, signature, message), so its result can be memoised.
# Gossip re-delivers the same signed record to every node many times; in one process (the
# simulator, a test, a node) each distinct triple is then verified once.
_VERIFIED_MAX = 65536
_verified: OrderedDict[bytes, bool] = OrderedDict()


def verify_ed25519(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    memo = hashlib.sha256(public_key + signature + data).digest()
    hit = _verified.get(memo)
    if hit is not None:
        _verified.move_to_end(memo)
        return hit
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
        ok = True
    except (InvalidSignature, ValueError):
        ok = False
    _verified[memo] = ok
    if len(_verified) > _VERIFIED_MAX:
        _verified.popitem(last=False)
    return ok
