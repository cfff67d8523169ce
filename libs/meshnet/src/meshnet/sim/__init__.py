"""meshnet.sim: a seeded deterministic simulator for sans-I/O protocol cores.

A :class:`Simulation` owns a virtual clock, a seeded network (per-link delay, loss, duplication,
corruption, reordering, partitions) and nodes that crash, restart and pause. Nodes implement the
:class:`SimNode` protocol and act through their :class:`NodeContext`. :func:`run_seeds` runs a
scenario over many seeds and turns a failure into a one-line reproduction command;
``python -m meshnet.sim module:scenario --seed N`` replays one run and prints its trace.
See docs/meshnet-testworlds.md.
"""

from meshnet.sim._errors import InvariantError, SimulationError, SimulationFailure, SimulationTimeoutError
from meshnet.sim._link import DelayDistribution, LinkProfile
from meshnet.sim._node import NodeContext, SimNode
from meshnet.sim._seeds import SEED_ENV, SEEDS_ENV, run_seeds, seed_count
from meshnet.sim._simulation import SimStats, Simulation, derive_rng

__all__ = [
    # the world
    "Simulation",
    "LinkProfile",
    "DelayDistribution",
    "SimStats",
    # nodes
    "SimNode",
    "NodeContext",
    # many seeds
    "run_seeds",
    "seed_count",
    "derive_rng",
    "SEEDS_ENV",
    "SEED_ENV",
    # errors
    "SimulationError",
    "InvariantError",
    "SimulationTimeoutError",
    "SimulationFailure",
]
