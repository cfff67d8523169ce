"""The one exception hierarchy of `meshnet`: everything it raises on bad input is a `MeshnetError`.

Messages name the offending field or file and say what would be valid, because the people who read
them are operators joining a node to a network, not the authors of this library.
"""

from __future__ import annotations

__all__ = [
    "MeshnetError",
    "IdentityError",
    "KeyFileError",
    "CertificateError",
    "DecodeError",
    "FrameTooLargeError",
    "HandshakeError",
    "StreamClosedError",
    "PeerUnreachableError",
]


class MeshnetError(Exception):
    """Root of every error `meshnet` raises on purpose."""


class IdentityError(MeshnetError):
    """A key, signature input or identity value is malformed (wrong length, wrong type)."""


class KeyFileError(IdentityError):
    """A key file is missing, malformed, or readable by others than its owner."""


class CertificateError(MeshnetError):
    """A certificate or revocation list is malformed, not signed by the expected network, or expired."""


class DecodeError(MeshnetError):
    """Network input was malformed: garbage, truncated, or a field out of its bounds."""


class FrameTooLargeError(DecodeError):
    """A frame announced a length above the configured maximum; it is never read into memory."""


class HandshakeError(MeshnetError):
    """A connection was refused while authenticating; `reason` is the metric label explaining why.

    Raised on the side that detected the problem, and on the refused side when the peer told it why
    (or with reason ``refused_by_peer`` when the peer just closed the connection).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"handshake refused ({reason}): {message}")
        self.reason = reason


class StreamClosedError(MeshnetError):
    """The peer closed the stream cleanly at a frame boundary; no frame was lost."""


class PeerUnreachableError(MeshnetError):
    """No TCP connection could be opened to the peer's address (refused, unreachable, reset)."""
