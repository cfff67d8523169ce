"""One exception hierarchy for the whole library, rooted at :class:`BlockstoreError`.

Every error carries an NBD errno so the NBD driver can turn any library failure into a reply the
client understands, instead of dropping the connection.
"""

from __future__ import annotations

import errno

__all__ = [
    "REPLICA_FAILURES",
    "BlockstoreError",
    "ConfigError",
    "OutOfRangeError",
    "ReplicaUnavailableError",
    "InsufficientReplicasError",
    "CorruptBlockError",
    "EncryptionError",
    "WireError",
    "NbdProtocolError",
]


class BlockstoreError(Exception):
    """Root of every error raised by `blockstore`."""

    errno: int = errno.EIO


class ConfigError(BlockstoreError, ValueError):
    """A configuration value is invalid; the message names the field and what would be valid."""

    errno = errno.EINVAL


class OutOfRangeError(BlockstoreError):
    """An I/O request falls outside the volume."""

    errno = errno.EINVAL


class ReplicaUnavailableError(BlockstoreError):
    """A replica did not answer (connection lost, timeout, node down)."""


class InsufficientReplicasError(BlockstoreError):
    """Fewer live replicas than the write policy's minimum: I/O is refused rather than under-replicated."""


class CorruptBlockError(BlockstoreError):
    """A block failed its checksum on every replica that holds it: nothing correct is left to return."""


class EncryptionError(BlockstoreError):
    """A block could not be decrypted (wrong or retired key, or tampered ciphertext)."""


class WireError(BlockstoreError):
    """A replication-protocol frame is malformed (length, opcode or field out of bounds)."""


class NbdProtocolError(BlockstoreError):
    """The NBD peer broke a mandatory rule; the only safe answer is to close the connection."""


REPLICA_FAILURES = (ReplicaUnavailableError, TimeoutError, OSError)
"""What a replica that is down or unreachable raises: caught together wherever I/O fails over."""
