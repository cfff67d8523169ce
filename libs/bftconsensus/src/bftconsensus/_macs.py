"""MAC authenticators on client requests (Castro & Liskov's, for the backups' sake).

A client sends a request's first transmission to the primary alone; the primary takes it from
the client's link and puts it in a batch. A backup must vouch that the client sent each request of the
batch (see ``RequestIntake._authenticate``). With a signature that costs an Ed25519 verification
per request and backup; with an authenticator it costs one MAC: the request carries a 16-byte
tag per replica, each under a key the client shares with that replica alone (sent in its
CLIENT_LINK grant over the authenticated, encrypted link). The MAC is keyed BLAKE2b (RFC 7693's
keyed mode, a PRF under a 32-byte key), 0.8 µs a tag here against 1.8 for HMAC-SHA256: a client
computes one per replica for every request and each backup checks one per request in a batch.
A backup whose tag is wrong or missing, or that holds no key, falls back to the signature. A
client that both signs badly and forges tags can thus make backups refuse a batch (PBFT's
exposure to such clients); each one that refuses marks the client a suspect and checks its
signatures from then on (see ``RequestIntake._checks_signatures``).

Keys are derived, not drawn: the client's signature over a fixed label and the replica's id,
hashed. Only the holder of the signing key can compute it, it needs no randomness (so the
simulator stays deterministic), and the client can give it again after a replica restarts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from hashlib import blake2b

from bftconsensus._crypto import Signer, signing_payload

__all__ = ["MAC_BYTES", "KEY_BYTES", "derive_key", "authenticator", "tag_matches"]

MAC_BYTES = 16
KEY_BYTES = 32
_LABEL = b"bftconsensus.mac-key.v1\x00"


def derive_key(signer: Signer, replica: str) -> bytes:
    """The MAC key ``signer`` shares with ``replica``."""
    return hashlib.sha256(signer.sign(_LABEL + replica.encode())).digest()


def authenticator(keys: Sequence[bytes], kind: int, signer: str, body: bytes) -> bytes:
    """One tag per key, in order, over exactly what the signature covers."""
    payload = signing_payload(kind, signer, body)
    return b"".join(blake2b(payload, key=key, digest_size=MAC_BYTES).digest() for key in keys)


def tag_matches(key: bytes, index: int, macs: bytes, kind: int, signer: str, body: bytes) -> bool:
    """Whether the ``index``-th tag of ``macs`` is the one ``key`` gives this message."""
    tag = macs[index * MAC_BYTES : (index + 1) * MAC_BYTES]
    if len(tag) != MAC_BYTES:
        return False
    expected = blake2b(signing_payload(kind, signer, body), key=key, digest_size=MAC_BYTES).digest()
    return hmac.compare_digest(tag, expected)
