"""Encryption at rest: AES-256-GCM per block, tag and nonce stored in the block's record.

Why GCM per block rather than XTS: XTS is length-preserving but unauthenticated, so a storage
node (or anyone with the disk) could flip ciphertext bits and the guest would read garbage that
passed every check, and it is deterministic per position (rewriting the same data reveals it).
Each block already has a 40-byte metadata record, so GCM's 12-byte nonce and 16-byte tag cost no
extra I/O; the tag authenticates the block, and the additional data (volume name, block index)
binds it to its position so blocks cannot be swapped or moved between volumes. Nonces are random
(96 bits); a key should encrypt fewer than 2**32 blocks, which key rotation keeps true.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import ConfigError, EncryptionError
from ._records import CHECKSUM_FLAG, FLAG_ENCRYPTED, FLAG_WRITTEN, RECORD, block_checksum

__all__ = ["Keyring"]


class Keyring:
    """Keys of one volume by id. New writes use ``current_id``; older ids still decrypt."""

    def __init__(self, keys: Mapping[int, bytes], current_id: int) -> None:
        self._keys: dict[int, AESGCM] = {}
        for key_id, key in keys.items():
            self._add(key_id, key)
        if current_id not in self._keys:
            raise ConfigError(f"current_id={current_id}: not among the key ids {sorted(self._keys)}")
        self.current_id = current_id

    def __repr__(self) -> str:  # never show key material
        return f"Keyring(ids={sorted(self._keys)}, current_id={self.current_id})"

    @classmethod
    def generate(cls, key_id: int = 1) -> Keyring:
        return cls({key_id: AESGCM.generate_key(bit_length=256)}, key_id)

    def _add(self, key_id: int, key: bytes) -> None:
        if not 0 < key_id < 2**32:
            raise ConfigError(f"key_id={key_id}: must be between 1 and 2**32-1")
        if len(key) != 32:
            raise ConfigError(f"key {key_id}: must be 32 bytes (AES-256), got {len(key)}")
        self._keys[key_id] = AESGCM(key)

    @property
    def key_ids(self) -> list[int]:
        return sorted(self._keys)

    def rotate(self, key_id: int, key: bytes) -> None:
        """Add ``key`` and make it current; old keys stay until :meth:`retire`."""
        if key_id in self._keys:
            raise ConfigError(f"key_id={key_id}: already in the keyring")
        self._add(key_id, key)
        self.current_id = key_id

    def retire(self, key_id: int) -> None:
        """Forget a key (after re-encryption moved every block off it)."""
        if key_id == self.current_id:
            raise ConfigError(f"key_id={key_id}: the current key cannot be retired")
        self._keys.pop(key_id, None)

    @staticmethod
    def _aad(volume: str, block: int) -> bytes:
        return volume.encode() + b"\x00" + struct.pack("<Q", block)

    def seal(self, volume: str, first_block: int, data: bytes, block_size: int) -> tuple[bytes, bytes]:
        """Encrypt whole blocks; returns (stored bytes, records)."""
        aead = self._keys[self.current_id]
        key_id = self.current_id
        flags = FLAG_WRITTEN | FLAG_ENCRYPTED | CHECKSUM_FLAG
        stored: list[bytes] = []
        records: list[bytes] = []
        view = memoryview(data)
        for i in range(len(data) // block_size):
            nonce = os.urandom(12)
            sealed = aead.encrypt(
                nonce, view[i * block_size : (i + 1) * block_size], self._aad(volume, first_block + i)
            )
            ct, tag = sealed[:-16], sealed[-16:]
            stored.append(ct)
            records.append(RECORD.pack(flags, block_checksum(ct), key_id, nonce, tag))
        return b"".join(stored), b"".join(records)

    def open(self, volume: str, block: int, stored: bytes | memoryview, record: bytes | memoryview) -> bytes:
        _flags, _crc, key_id, nonce, tag = RECORD.unpack(record)
        aead = self._keys.get(key_id)
        if aead is None:
            raise EncryptionError(f"block {block}: sealed with key id {key_id}, not in the keyring")
        try:
            return aead.decrypt(nonce, bytes(stored) + tag, self._aad(volume, block))
        except InvalidTag:
            raise EncryptionError(f"block {block}: authentication failed (tampered or wrong key)") from None

    @staticmethod
    def key_id_of(record: bytes | memoryview) -> int:
        return int(RECORD.unpack(record)[2])
