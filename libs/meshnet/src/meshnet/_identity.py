"""Node identity: an Ed25519 key pair whose public key names the node.

The node id is derived from the public key (not chosen), so nobody can claim another node's id
without its private key, and every layer above (spore records, BFT votes) can check an id against
the key that signed for it with `node_id_for`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any, Self

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from meshnet._errors import IdentityError, KeyFileError
from meshnet._keyfile import RedactedRepr, read_secret_file, write_secret_file

__all__ = ["NodeIdentity", "node_id_for", "verify_signature", "PUBLIC_KEY_BYTES", "SIGNATURE_BYTES"]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
_ID_CHARS = 26
"""26 base32 characters = 130 bits of SHA-256: collision-free for any realistic network size."""


def node_id_for(public_key: bytes) -> str:
    """The stable id of the holder of ``public_key`` (32 raw Ed25519 bytes): lowercase base32 of SHA-256."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_BYTES:
        raise IdentityError(
            f"public_key must be {PUBLIC_KEY_BYTES} raw Ed25519 bytes, got {_describe(public_key)}"
        )
    digest = hashlib.sha256(public_key).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_ID_CHARS]


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``data``; False for any bad input.

    Never raises on malformed keys or signatures: callers use it on network input and want a verdict.
    """
    values: tuple[object, ...] = (public_key, signature, data)
    if not all(isinstance(v, bytes) for v in values):
        return False
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_private_key(_instance: object, _attribute: object, value: Any) -> None:
    """attrs validator: an Ed25519 private key object from `cryptography`."""
    if not isinstance(value, Ed25519PrivateKey):
        raise IdentityError(f"private_key must be an Ed25519PrivateKey, got {type(value).__name__}")


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return type(value).__name__


@attrs.frozen(repr=False, eq=False)
class NodeIdentity(RedactedRepr):
    """An Ed25519 key pair. The private key never appears in ``repr``, logs or pickles of this object."""

    _private_key: Ed25519PrivateKey = attrs.field(validator=check_private_key, alias="private_key")
    # Derived once: protocols read node_id on every message they build or check.
    _public_key: bytes = attrs.field(init=False, repr=False)
    _node_id: str = attrs.field(init=False, repr=False)

    @_public_key.default
    def _derive_public_key(self) -> bytes:
        return self._private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @_node_id.default
    def _derive_node_id(self) -> str:
        return node_id_for(self._public_key)

    @classmethod
    def generate(cls) -> Self:
        """A fresh random key pair."""
        return cls(private_key=Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Self:
        """Rebuild from the 32-byte raw private key (seed)."""
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise IdentityError(f"private key must be 32 raw Ed25519 bytes, got {_describe(raw)}")
        return cls(private_key=Ed25519PrivateKey.from_private_bytes(raw))

    @property
    def public_key(self) -> bytes:
        """The 32 raw bytes of the public key."""
        return self._public_key

    @property
    def node_id(self) -> str:
        """`node_id_for` of the public key."""
        return self._node_id

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        if not isinstance(data, bytes):
            raise IdentityError(f"data to sign must be bytes, got {type(data).__name__}")
        return self._private_key.sign(data)

    def private_key_object(self) -> Ed25519PrivateKey:
        """The `cryptography` key object, for building certificates and TLS contexts (keep it in memory)."""
        return self._private_key

    def private_key_pem(self) -> bytes:
        """PKCS#8 PEM of the private key: the on-disk and TLS-context form. Treat the result as a secret."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the private key as PKCS#8 PEM to ``path`` with mode 0600."""
        write_secret_file(path, self.private_key_pem())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a key saved by `save`; refuses files with permissions looser than 0600."""
        data = read_secret_file(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(
                f"key file {str(path)!r} is not an unencrypted PKCS#8 PEM private key"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(
                f"key file {str(path)!r} holds a {type(key).__name__}, expected an Ed25519 key"
            )
        return cls(private_key=key)

    def __repr__(self) -> str:
        return f"NodeIdentity(node_id={self.node_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeIdentity) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __getstate__(self) -> None:
        raise TypeError("NodeIdentity holds a private key and cannot be pickled; use save()/load()")
