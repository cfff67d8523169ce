"""The one exception hierarchy of `spore`: every error the library raises is a `SporeError`."""

from __future__ import annotations

__all__ = ["ConfigError", "DecodeError", "RecordRejectedError", "SporeError", "UnknownNetworkError"]


class SporeError(Exception):
    """Root of every error raised by `spore`."""


class ConfigError(SporeError, ValueError):
    """A configuration value is out of range; the message names the field and the valid range."""


class DecodeError(SporeError):
    """Network input could not be decoded: too large, malformed, or over a count bound.

    This is the ONLY exception a decoder of network bytes raises, whatever the input.
    `reason` is "oversized" when a size or count bound was exceeded, else "malformed".
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class RecordRejectedError(SporeError):
    """A spore record failed validation. `reason` is a stable, metric-friendly label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"spore record rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class UnknownNetworkError(SporeError, KeyError):
    """A request named a network this node does not belong to (and no federation link covers)."""
