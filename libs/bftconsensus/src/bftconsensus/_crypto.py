"""Signing identities and signed envelopes.

A ``Signer`` is anything with ``node_id``, ``public_key`` and ``sign`` (meshnet's ``NodeIdentity``
has that shape); :class:`Ed25519Signer` is the built-in one. The signature of an envelope covers a
domain tag, the message kind, the signer's id and the exact body bytes, so a verifier never has to
re-encode anything and a body can be replayed neither as another kind nor under another name.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Protocol

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bftconsensus._errors import DecodeError

__all__ = ["Signer", "Ed25519Signer", "KeyDirectory", "signing_payload", "verify"]

_DOMAIN = b"bftconsensus.v1\x00"

KeyDirectory = Mapping[str, bytes]
"""Node id -> raw 32-byte Ed25519 public key: who may sign what."""


class Signer(Protocol):
    """A node's signing identity."""

    @property
    def node_id(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


@attrs.frozen(repr=False)
class Ed25519Signer:
    """An Ed25519 key pair with a node id (derived from the public key unless given)."""

    _key: Ed25519PrivateKey
    node_id: str

    @classmethod
    def generate(cls, node_id: str | None = None) -> Ed25519Signer:
        key = Ed25519PrivateKey.generate()
        return cls(key, node_id or _derive_id(_raw_public(key)))

    @classmethod
    def from_seed(cls, seed: bytes, node_id: str | None = None) -> Ed25519Signer:
        """A deterministic key from a 32-byte seed (tests and simulations only)."""
        key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
        return cls(key, node_id or _derive_id(_raw_public(key)))

    @property
    def public_key(self) -> bytes:
        return _raw_public(self._key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:  # never show key material
        return f"Ed25519Signer(node_id={self.node_id!r})"


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _derive_id(public_key: bytes) -> str:
    return "n" + hashlib.sha256(public_key).hexdigest()[:20]


def signing_payload(kind: int, signer: str, body: bytes) -> bytes:
    """The exact bytes a signature covers."""
    sid = signer.encode()
    return _DOMAIN + kind.to_bytes(4, "big") + len(sid).to_bytes(2, "big") + sid + body


@functools.lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    """Loading a key costs a few µs (about 3% of a verification): each is loaded once."""
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(keys: KeyDirectory, kind: int, signer: str, body: bytes, signature: bytes) -> None:
    """Raise DecodeError unless ``signer`` is known and signed exactly this kind and body."""
    public = keys.get(signer)
    if public is None:
        raise DecodeError(f"signer {signer[:64]!r} is not in the key directory")
    if len(signature) != 64:
        raise DecodeError(f"signature must be 64 bytes, got {len(signature)}")
    try:
        _public_key(bytes(public)).verify(signature, signing_payload(kind, signer, body))
    except (InvalidSignature, ValueError) as exc:
        raise DecodeError(f"bad signature from {signer[:64]!r} on message kind {kind}") from exc
