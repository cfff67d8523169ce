"""The one exception hierarchy of bftconsensus: everything it raises on purpose is a BftConsensusError."""

from __future__ import annotations

__all__ = [
    "BftConsensusError",
    "ConfigError",
    "DecodeError",
    "VerificationError",
    "NoMajorityError",
    "UnknownFunctionError",
]


class BftConsensusError(Exception):
    """Root of every error bftconsensus raises deliberately."""


class ConfigError(BftConsensusError, ValueError):
    """A configuration value is out of range; the message names the field and the valid range."""


class DecodeError(BftConsensusError):
    """Network input was malformed, oversized, of the wrong kind or badly signed.

    It is the only exception a decoder of untrusted bytes raises.
    """


class VerificationError(BftConsensusError):
    """A verdict, certificate or proof does not follow from the signed messages it carries."""


class UnknownFunctionError(BftConsensusError):
    """An operation names a function the executor has not registered."""


class NoMajorityError(BftConsensusError):
    """No result reached the required majority within the attempt bound.

    ``revealed`` maps each distinct revealed result to the executors that revealed it, so the
    caller can see exactly what disagreed.
    """

    def __init__(self, op_id: str, attempts: int, revealed: dict[bytes, list[str]], needed: str) -> None:
        self.op_id = op_id
        self.attempts = attempts
        self.revealed = revealed
        shown = (
            "; ".join(f"{r[:32].hex() or '<empty>'}: {', '.join(sorted(who))}" for r, who in revealed.items())
            or "nothing was revealed"
        )
        super().__init__(
            f"operation {op_id!r}: no result reached {needed} after {attempts} attempt(s); revealed: {shown}"
        )
