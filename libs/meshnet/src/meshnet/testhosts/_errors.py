"""Exceptions of the test-host harness."""

from __future__ import annotations

from meshnet._errors import MeshnetError

__all__ = ["HostNetworkError"]


class HostNetworkError(MeshnetError):
    """Setting up, driving or tearing down test hosts failed (the message names the command)."""
