"""Per-block metadata records: what makes every stored block verifiable.

A record is 40 bytes: flags, CRC-32 of the stored bytes, key id, GCM nonce and GCM tag. The
volume front end computes records (and encrypts) before replication, so every replica stores the
same bytes and the same records; storage nodes never see keys or plaintext of encrypted volumes.
An all-zero record means "never written / trimmed": the block reads as zeros without touching data.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Final

__all__ = [
    "RECORD",
    "RECORD_SIZE",
    "FLAG_WRITTEN",
    "FLAG_ENCRYPTED",
    "plain_records",
    "records_digest",
    "crc_ok",
]

RECORD: Final = struct.Struct("<III12s16s")
RECORD_SIZE: Final = RECORD.size
FLAG_WRITTEN: Final = 1
FLAG_ENCRYPTED: Final = 2
_NO_NONCE = bytes(12)
_NO_TAG = bytes(16)


def plain_records(data: bytes | memoryview, block_size: int) -> bytes:
    """Records for unencrypted blocks: written flag plus CRC-32 of each block."""
    pack = RECORD.pack
    if len(data) == block_size:  # the common 4 KiB write: no generator, no join
        return pack(FLAG_WRITTEN, zlib.crc32(data), 0, _NO_NONCE, _NO_TAG)
    view = memoryview(data)
    return b"".join(
        pack(FLAG_WRITTEN, zlib.crc32(view[i : i + block_size]), 0, _NO_NONCE, _NO_TAG)
        for i in range(0, len(view), block_size)
    )


def crc_ok(stored: bytes | memoryview, record: bytes | memoryview) -> bool:
    flags, crc = struct.unpack_from("<II", record)
    return not flags & FLAG_WRITTEN or zlib.crc32(stored) == crc


def records_digest(records: bytes) -> bytes:
    """Digest of a chunk's records: equal digests mean equal contents (records hold the CRCs)."""
    return hashlib.blake2b(records, digest_size=16).digest()
