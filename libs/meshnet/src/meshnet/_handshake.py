"""The isolation proof run inside every TLS tunnel, as pure functions and a replay guard (sans-I/O).

Flow (each step one bounded frame)::

    client -> server  Hello(nonce_c)
    server -> client  Hello(nonce_s)
    client -> server  Proof(mac_c)                 mac_c = HMAC(K, "client" | transcript)
    server -> client  Verdict(accepted, mac_s)     mac_s = HMAC(K, "server" | transcript)
                   or Verdict(refused, reason)

transcript = both certificates' SHA-256 fingerprints (client's first) and both nonces. K is the
network's isolation key, or the federation link's secret when the peer is from a federated network.
Because the transcript names the certificates of THIS TLS session and a fresh nonce of each side, a
recorded proof is useless on any other connection; the server also refuses a reused client nonce.
"""

from __future__ import annotations

import collections
import hashlib
import hmac

from meshnet._codec import decode_message
from meshnet._errors import DecodeError, HandshakeError
from meshnet._pb.meshnet.v1 import Hello, Proof, Verdict

__all__ = [
    "HANDSHAKE_VERSION",
    "NONCE_BYTES",
    "MAX_HANDSHAKE_FRAME",
    "REFUSAL_REASONS",
    "transcript_mac",
    "NonceCache",
    "decode_hello",
    "decode_proof",
    "decode_verdict",
]

HANDSHAKE_VERSION = 1
NONCE_BYTES = 32
MAC_BYTES = 32
MAX_HANDSHAKE_FRAME = 4096
"""Handshake messages are < 200 bytes; the frame bound during the handshake is this, not max_frame_size."""
_LABEL = b"mycelium-meshnet-isolation-v1"
_MAX_PERMISSIONS = 256
_MAX_PERMISSION_CHARS = 64

REFUSAL_REASONS = frozenset(
    {
        "wrong_network",  # certificate does not chain to our CA nor to a federated one
        "expired",  # certificate outside its validity period
        "revoked",  # certificate (or its node) is on the revocation list
        "bad_certificate",  # malformed certificate, node id not derived from its key, no certificate
        "bad_proof",  # peer does not know the isolation key / federation secret
        "replay",  # client nonce seen before
        "malformed",  # garbage or out-of-bounds handshake message
        "version",  # unsupported handshake version
        "timeout",  # handshake did not finish in time
        "tls_error",  # TLS failed for another reason (garbage, protocol version, cipher)
        "refused_by_peer",  # the other side closed or aborted without telling us why
        "closed",  # the client closed the connection before finishing the handshake
        "unexpected_node",  # the server is not the node the caller asked for
    }
)


def transcript_mac(
    key: bytes, role: bytes, client_fp: bytes, server_fp: bytes, client_nonce: bytes, server_nonce: bytes
) -> bytes:
    """HMAC-SHA256 binding ``key`` to this connection; ``role`` is b"client" or b"server"."""
    msg = b"|".join((_LABEL, role, client_fp, server_fp, client_nonce, server_nonce))
    return hmac.new(key, msg, hashlib.sha256).digest()


def macs_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class NonceCache:
    """Remembers the last ``capacity`` client nonces so a replayed Hello is refused outright.

    Bounded (FIFO eviction) so a flood of connections cannot grow memory; replays of evicted nonces
    still fail, because the server's fresh nonce is in the transcript.
    """

    def __init__(self, capacity: int = 65536) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def check_and_add(self, nonce: bytes) -> bool:
        """True if ``nonce`` is new (and now remembered); False if it was seen before."""
        if nonce in self._seen:
            return False
        self._seen[nonce] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True


def _handshake_decode_error(what: str, exc: DecodeError) -> HandshakeError:
    return HandshakeError("malformed", f"{what}: {exc}")


def decode_hello(data: bytes) -> Hello:
    """A peer's Hello, checked: supported version, nonce of exactly 32 bytes."""
    try:
        hello = decode_message(Hello, data, max_bytes=MAX_HANDSHAKE_FRAME)
    except DecodeError as exc:
        raise _handshake_decode_error("Hello", exc) from None
    if hello.version != HANDSHAKE_VERSION:
        raise HandshakeError(
            "version", f"Hello.version is {hello.version}, this node speaks {HANDSHAKE_VERSION}"
        )
    if len(hello.nonce) != NONCE_BYTES:
        raise HandshakeError("malformed", f"Hello.nonce must be {NONCE_BYTES} bytes, got {len(hello.nonce)}")
    if len(hello.network_id) > 64:
        raise HandshakeError("malformed", "Hello.network_id is longer than 64 characters")
    return hello


def decode_proof(data: bytes) -> Proof:
    try:
        proof = decode_message(Proof, data, max_bytes=MAX_HANDSHAKE_FRAME)
    except DecodeError as exc:
        raise _handshake_decode_error("Proof", exc) from None
    if len(proof.mac) != MAC_BYTES:
        raise HandshakeError("malformed", f"Proof.mac must be {MAC_BYTES} bytes, got {len(proof.mac)}")
    return proof


def decode_verdict(data: bytes) -> Verdict:
    try:
        verdict = decode_message(Verdict, data, max_bytes=MAX_HANDSHAKE_FRAME)
    except DecodeError as exc:
        raise _handshake_decode_error("Verdict", exc) from None
    if verdict.accepted and len(verdict.mac) != MAC_BYTES:
        raise HandshakeError("malformed", f"Verdict.mac must be {MAC_BYTES} bytes, got {len(verdict.mac)}")
    if not verdict.accepted and verdict.reason not in REFUSAL_REASONS:
        raise HandshakeError("malformed", f"Verdict.reason {verdict.reason[:40]!r} is not a known reason")
    if len(verdict.permissions) > _MAX_PERMISSIONS or any(
        len(p) > _MAX_PERMISSION_CHARS for p in verdict.permissions
    ):
        raise HandshakeError("malformed", "Verdict.permissions exceeds 256 entries of 64 characters")
    return verdict
