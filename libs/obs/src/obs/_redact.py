"""Redaction of secrets by key name, applied to every structured log field before it leaves.

A key is secret when one of its words (split on ``_``, ``-``, ``.``, spaces and camelCase) is a
secret word, or when it contains ``private``. Matching by words keeps ``monkey`` or ``tokenizer``
readable while ``api_key``, ``isolationKey``, ``X-Auth-Token`` and ``private_pem`` are hidden.
Values are replaced, never logged partially: a prefix of a key is still key material.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact"]

REDACTED = "[REDACTED]"
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "secrets",
        "token",
        "tokens",
        "key",
        "keys",
        "apikey",
        "privkey",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "cookie",
    }
)
_WORD_SPLIT = re.compile(r"[^a-zA-Z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# Nested containers deeper than this are summarised rather than walked (bounded work per line).
MAX_DEPTH = 8


def is_secret_key(key: object) -> bool:
    """Whether a field called ``key`` must have its value hidden."""
    text = str(key)
    lowered = text.lower()
    if "private" in lowered or "password" in lowered or "secret" in lowered:
        return True
    words = {w.lower() for w in _WORD_SPLIT.split(text) if w}
    return not words.isdisjoint(_SECRET_WORDS)


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with secret-named entries of every nested mapping replaced."""
    if depth > MAX_DEPTH:
        return "[TOO DEEP]"
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_secret_key(k) else redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, depth + 1) for v in value]
    return value
