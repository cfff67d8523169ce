"""Secret files: written 0600, refused on load when anyone but the owner could read them.

A private key that other local users can read is a leaked key; failing loudly on load (like ssh does
for ``~/.ssh/id_ed25519``) is the only way an operator notices before it matters.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from meshnet._errors import KeyFileError

__all__ = ["read_secret_file", "write_secret_file", "RedactedRepr"]

MAX_KEY_FILE_BYTES = 64 * 1024
"""Key files are tiny; anything bigger is not one of ours and is refused before it is read."""


def write_secret_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` with mode 0600 (the mode is set before any byte is written)."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    return target


def read_secret_file(path: str | os.PathLike[str]) -> bytes:
    """Read a secret file, refusing it if group or others have any permission on it."""
    source = Path(path)
    try:
        info = source.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {str(source)!r} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {str(source)!r} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {str(source)!r} has permissions {mode:04o}; it must be readable by its owner only "
            f"(run: chmod 600 {source})"
        )
    if info.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(
            f"key file {str(source)!r} is {info.st_size} bytes; key files are at most {MAX_KEY_FILE_BYTES}"
        )
    return source.read_bytes()


class RedactedRepr:
    """Mixin for classes holding secrets: pretty-printers (IPython, Hypothesis) that walk attrs fields
    would print the key bytes; this makes them use the class's own redacted ``repr`` instead."""

    __slots__ = ()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))
