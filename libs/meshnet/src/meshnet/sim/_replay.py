"""``python -m meshnet.sim TARGET --seed N``: replay one scenario run and print its trace."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, cast

from meshnet.sim._errors import SimulationError
from meshnet.sim._simulation import collect_simulations

__all__ = ["load_scenario", "main"]


def load_scenario(target: str) -> Callable[[int], object]:
    """Resolve ``package.module:function`` or ``path/to/file.py:function`` to the scenario."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise SimulationError(f"scenario must be 'module:function' or 'file.py:function', got {target!r}")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise SimulationError(f"scenario file {where!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"_meshnet_sim_replay_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise SimulationError(f"cannot load {where!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise SimulationError(f"cannot import scenario module {where!r}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise SimulationError(f"{where!r} has no callable {name!r}")
    return cast("Callable[[int], object]", fn)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    stream = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(
        prog="python -m meshnet.sim",
        description="Replay one simulator scenario for one seed; print its trace.",
    )
    parser.add_argument("target", help="module:function or path/file.py:function (called as function(seed))")
    parser.add_argument("--seed", type=int, required=True, help="the seed to replay")
    parser.add_argument("--tail", type=int, default=0, help="print only the last N trace lines (0 = all)")
    parser.add_argument("--traceback", action="store_true", help="print the full traceback on failure")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.target)
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failure: BaseException | None = None
    with collect_simulations() as sims:
        try:
            scenario(args.seed)
        except Exception as exc:
            failure = exc
    for index, sim in enumerate(sims):
        lines = sim.trace[-args.tail :] if args.tail > 0 else sim.trace
        header = f"# simulation {index} seed={sim.seed} events={sim.stats.events} sha256={sim.trace_digest()}"
        print(header, file=stream)
        for line in lines:
            print(line, file=stream)
    if failure is not None:
        if args.traceback:
            traceback.print_exception(failure, file=sys.stderr)
        print(f"FAILED seed={args.seed}: {type(failure).__name__}: {failure}", file=sys.stderr)
        return 1
    print(f"OK seed={args.seed}", file=stream)
    return 0
