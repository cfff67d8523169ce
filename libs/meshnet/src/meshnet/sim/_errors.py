"""Exceptions raised by the simulator.

Everything the simulator raises on its own account derives from :class:`SimulationError`.
Invariant violations and timeouts are also :class:`AssertionError` so that a test that drives the
simulator reads as a failed assertion, not as a crash of the test machinery.
"""

from __future__ import annotations

from meshnet._errors import MeshnetError

__all__ = ["InvariantError", "SimulationError", "SimulationFailure", "SimulationTimeoutError"]


class SimulationError(MeshnetError):
    """Root of the simulator's exceptions (bad input to the simulator, or a run that went wrong)."""


class InvariantError(SimulationError, AssertionError):
    """An invariant registered with ``Simulation.add_invariant`` failed after an event step."""


class SimulationTimeoutError(SimulationError, AssertionError):
    """``Simulation.run_until`` reached its virtual-time timeout before the condition held."""


class SimulationFailure(SimulationError, AssertionError):  # noqa: N818 (name fixed by the shared contract)
    """A scenario failed for one seed under ``run_seeds``.

    ``seed`` is the failing seed and ``repro`` a one-line shell command that replays exactly that
    run; both also appear in the message. The original exception is the ``__cause__``.
    """

    def __init__(self, message: str, *, seed: int, repro: str) -> None:
        super().__init__(message)
        self.seed = seed
        self.repro = repro
