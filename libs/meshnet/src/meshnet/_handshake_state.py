"""The isolation-proof handshake as two sans-I/O state machines (see `_handshake` for the flow).

The anyio driver (`_connect`) only moves frames: it feeds each received frame to the machine and
sends what the machine returns. Nonces come from an injected ``random`` so tests (and the simulator)
can replay a handshake exactly.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from meshnet._credentials import PeerCheck
from meshnet._errors import HandshakeError
from meshnet._handshake import (
    HANDSHAKE_VERSION,
    NONCE_BYTES,
    NonceCache,
    decode_hello,
    decode_proof,
    decode_verdict,
    macs_equal,
    transcript_mac,
)
from meshnet._pb.meshnet.v1 import Hello, Proof, Verdict
from meshnet._peer import PeerInfo

__all__ = ["ClientHandshake", "ServerHandshake"]

Random = Callable[[int], bytes]


def _expect(state: str, wanted: str, step: str) -> None:
    if state != wanted:
        raise HandshakeError("malformed", f"{step} arrived in state {state!r}, expected {wanted!r}")


class ServerHandshake:
    """Server side, after TLS. ``check`` is the verified client certificate, or ``problem`` says why
    it was refused: the exchange still runs to the Verdict so the client learns the reason."""

    def __init__(
        self,
        *,
        check: PeerCheck | None,
        problem: HandshakeError | None,
        client_fp: bytes,
        server_fp: bytes,
        network_id: str,
        nonces: NonceCache,
        random: Random = secrets.token_bytes,
    ) -> None:
        if (check is None) == (problem is None):
            raise ValueError("exactly one of check and problem must be given")
        self._check, self._problem = check, problem
        self._client_fp, self._server_fp = client_fp, server_fp
        self._network_id = network_id
        self._nonces = nonces
        self._random = random
        self._client_nonce = self._server_nonce = b""
        self.state = "wait_hello"

    def receive_hello(self, data: bytes) -> bytes:
        """The client's Hello in; our Hello (to send) out."""
        _expect(self.state, "wait_hello", "Hello")
        hello = decode_hello(data)
        self._client_nonce = hello.nonce
        self._server_nonce = self._random(NONCE_BYTES)
        self.state = "wait_proof"
        return bytes(Hello(version=HANDSHAKE_VERSION, nonce=self._server_nonce, network_id=self._network_id))

    def receive_proof(self, data: bytes) -> tuple[bytes, PeerInfo | HandshakeError]:
        """The client's Proof in; the Verdict to send and either the accepted peer or the refusal."""
        _expect(self.state, "wait_proof", "Proof")
        proof = decode_proof(data)
        problem = self._problem
        fresh = self._nonces.check_and_add(self._client_nonce)
        if problem is None and not fresh:
            problem = HandshakeError("replay", "client nonce was used by an earlier handshake")
        check = self._check
        if problem is None and check is not None:
            expected = self._mac(check.secret, b"client")
            if not macs_equal(expected, proof.mac):
                problem = HandshakeError(
                    "bad_proof", "client does not know this network's isolation key or federation secret"
                )
        if problem is not None or check is None:
            self.state = "refused"
            refusal = problem or HandshakeError("bad_certificate", "no verified certificate")
            return bytes(Verdict(accepted=False, reason=refusal.reason)), refusal
        self.state = "accepted"
        verdict = Verdict(
            accepted=True, mac=self._mac(check.secret, b"server"), permissions=sorted(check.peer.permissions)
        )
        return bytes(verdict), check.peer

    def _mac(self, secret: bytes, role: bytes) -> bytes:
        return transcript_mac(
            secret, role, self._client_fp, self._server_fp, self._client_nonce, self._server_nonce
        )


class ClientHandshake:
    """Client side, after TLS and after `MeshCredentials.check_peer` accepted the server certificate."""

    def __init__(
        self, *, check: PeerCheck, client_fp: bytes, server_fp: bytes, random: Random = secrets.token_bytes
    ) -> None:
        self._check = check
        self._client_fp, self._server_fp = client_fp, server_fp
        self._client_nonce = random(NONCE_BYTES)
        self._server_nonce = b""
        self.state = "start"

    def hello(self) -> bytes:
        """Our Hello, the first frame to send."""
        _expect(self.state, "start", "hello()")
        self.state = "wait_hello"
        return bytes(
            Hello(version=HANDSHAKE_VERSION, nonce=self._client_nonce, network_id=self._check.peer.network_id)
        )

    def receive_hello(self, data: bytes) -> bytes:
        """The server's Hello in; our Proof (to send) out."""
        _expect(self.state, "wait_hello", "Hello")
        self._server_nonce = decode_hello(data).nonce
        self.state = "wait_verdict"
        return bytes(Proof(mac=self._mac(b"client")))

    def receive_verdict(self, data: bytes) -> PeerInfo:
        """The server's Verdict in; the verified server out, or `HandshakeError` if refused either way."""
        _expect(self.state, "wait_verdict", "Verdict")
        verdict = decode_verdict(data)
        if not verdict.accepted:
            self.state = "refused"
            raise HandshakeError(verdict.reason, f"server {self._check.peer.node_id} refused this node")
        if not macs_equal(self._mac(b"server"), verdict.mac):
            self.state = "refused"
            raise HandshakeError(
                "bad_proof", f"server {self._check.peer.node_id} does not know the network secret"
            )
        self.state = "accepted"
        return self._check.peer

    def _mac(self, role: bytes) -> bytes:
        return transcript_mac(
            self._check.secret, role, self._client_fp, self._server_fp, self._client_nonce, self._server_nonce
        )
