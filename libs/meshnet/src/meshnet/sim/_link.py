"""How a simulated link treats the messages that cross it."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from meshnet.sim._errors import SimulationError

__all__ = ["DelayDistribution", "LinkProfile"]

#: A delay is either a uniform range ``(low, high)`` in virtual seconds or a function drawing one
#: from the network RNG (for long tails: ``lambda rng: rng.expovariate(100)``).
DelayDistribution = tuple[float, float] | Callable[[random.Random], float]


def _check_delay(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if callable(value):
        return
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in value)
    ):
        raise SimulationError(
            f"LinkProfile.{attribute.name} must be a (low, high) tuple of finite seconds or a "
            f"callable(rng) -> seconds, got {value!r}"
        )
    low, high = value
    if not 0 <= low <= high:
        raise SimulationError(f"LinkProfile.{attribute.name} needs 0 <= low <= high, got {value!r}")


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise SimulationError(f"LinkProfile.{attribute.name} must be a probability in [0, 1], got {value!r}")


@attrs.frozen
class LinkProfile:
    """Per-direction behaviour of a link.

    Every message draws its own delay, so two messages on the same link can arrive in the opposite
    order to the one they were sent in (reordering comes for free), unless ``fifo`` is set, which
    models a stream transport (TCP/TLS): a message never overtakes an earlier one on that link.
    ``loss`` drops a message, ``duplicate`` delivers a second copy with its own delay, ``corrupt``
    flips one random bit of the payload (for exercising decoders against a hostile network).
    """

    delay: DelayDistribution = attrs.field(default=(0.001, 0.010), validator=_check_delay)
    loss: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    corrupt: float = attrs.field(default=0.0, validator=_probability)
    fifo: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    def draw_delay(self, rng: random.Random) -> float:
        """One message's delay in virtual seconds (validated: a callable must return >= 0)."""
        if callable(self.delay):
            value = self.delay(rng)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise SimulationError(f"LinkProfile.delay callable returned {value!r}; need finite >= 0")
            return float(value)
        low, high = self.delay
        return low if low == high else rng.uniform(low, high)
