"""The one exception hierarchy of `dram`: every error a caller can see is a :class:`DramError`."""

from __future__ import annotations

__all__ = ["DramError", "DramConfigError", "DramDecodeError", "TrackerUnavailableError", "DramStateError"]


class DramError(Exception):
    """Root of every error raised by `dram`."""


class DramConfigError(DramError, ValueError):
    """A configuration value is out of range; the message names the field and what is valid."""


class DramDecodeError(DramError):
    """Network input that is malformed or exceeds a bound. The only error network input can raise."""


class TrackerUnavailableError(DramError):
    """A dirty-page tracker cannot run on this kernel/process; ``reason`` says why (never assumed)."""

    def __init__(self, tracker: str, reason: str) -> None:
        super().__init__(f"{tracker} tracker unavailable: {reason}")
        self.tracker = tracker
        self.reason = reason


class DramStateError(DramError):
    """An operation was called in a state where it makes no sense (e.g. writing to a passive replica)."""
