"""Running a scenario over many seeds, and turning a failure into a one-line reproduction."""

from __future__ import annotations

import contextlib
import inspect
import os
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path

from meshnet.sim._errors import SimulationError, SimulationFailure
from meshnet.sim._simulation import collect_simulations

__all__ = ["SEED_ENV", "SEEDS_ENV", "run_seeds", "seed_count"]

#: How many seeds a simulator test runs (``nox -s sim`` sets 10000).
SEEDS_ENV = "MYCELIUM_SIM_SEEDS"
#: Run exactly this one seed (what a reproduction command sets).
SEED_ENV = "MYCELIUM_SIM_SEED"

_TRACE_TAIL = 15


def _env_int(name: str, minimum: int) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SimulationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SimulationError(f"{name} must be >= {minimum}, got {value}")
    return value


def seed_count(default: int = 100) -> int:
    """Number of seeds to run: ``MYCELIUM_SIM_SEEDS`` if set, else ``default``."""
    value = _env_int(SEEDS_ENV, 1)
    return default if value is None else value


def _custom_repro(template: str, seed: int) -> str:
    """``{seed}`` replaced by the seed; a template without it gets ``MYCELIUM_SIM_SEED=<seed>`` in front."""
    if "{seed}" in template:
        return template.replace("{seed}", str(seed))
    return f"{SEED_ENV}={seed} {template}"


def _default_repro(scenario: Callable[[int], object], seed: int) -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if current:
        node_id = current.rsplit(" (", 1)[0]
        return f"{SEED_ENV}={seed} pytest {shlex.quote(node_id)}"
    target = _scenario_target(scenario)
    if target is not None:
        return f"python -m meshnet.sim {shlex.quote(target)} --seed {seed}"
    return f"{SEED_ENV}={seed} <re-run the failing program>"


def _scenario_target(scenario: Callable[[int], object]) -> str | None:
    """``module:function`` or ``path.py:function`` naming a module-level scenario, else None."""
    qualname = getattr(scenario, "__qualname__", "")
    if not qualname or "<" in qualname or "." in qualname:
        return None
    module = getattr(scenario, "__module__", None)
    if module and module != "__main__" and not module.startswith(("test_", "conftest")):
        return f"{module}:{qualname}"
    try:
        source = inspect.getsourcefile(scenario)
    except TypeError:
        return None
    if source is None:
        return None
    path = Path(source)
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return f"{path}:{qualname}"


def run_seeds(
    scenario: Callable[[int], object],
    seeds: Iterable[int] | None = None,
    repro: str | None = None,
) -> int:
    """Run ``scenario(seed)`` for each seed; stop at the first failure with :class:`SimulationFailure`.

    ``seeds`` defaults to ``range(seed_count())``. If ``MYCELIUM_SIM_SEED`` is set, only that seed
    runs (this is how a reproduction command replays one run). ``repro`` is the reproduction
    command, with ``{seed}`` where the seed goes (without it, ``MYCELIUM_SIM_SEED=<seed>`` is put in
    front); by default it is built from the running pytest
    test id (``MYCELIUM_SIM_SEED=<seed> pytest <test id>``) or, outside pytest, from the
    scenario's module and name (``python -m meshnet.sim <module>:<scenario> --seed <seed>``).
    Returns the number of seeds run.
    """
    only = _env_int(SEED_ENV, 0)
    default: Iterable[int] = seeds if seeds is not None else range(seed_count())
    chosen: Iterable[int] = [only] if only is not None else default
    count = 0
    for seed in chosen:
        with collect_simulations() as sims:
            try:
                scenario(seed)
            except Exception as exc:
                command = _custom_repro(repro, seed) if repro is not None else _default_repro(scenario, seed)
                lines = [
                    f"scenario {getattr(scenario, '__qualname__', scenario)!s} failed for seed {seed}: "
                    f"{type(exc).__name__}: {exc}",
                    f"reproduce: {command}",
                ]
                if sims and sims[-1].trace:
                    lines.append(f"last {min(_TRACE_TAIL, len(sims[-1].trace))} trace lines:")
                    lines.extend("  " + line for line in sims[-1].trace[-_TRACE_TAIL:])
                raise SimulationFailure("\n".join(lines), seed=seed, repro=command) from exc
        count += 1
    return count
