"""Run the benchmarks: ``python bench/run.py [--only LIB] [--json PATH] [--repetitions N]``.

Discovers ``bench/bench_*.py``, runs every comparison (ours and the peer alternating), prints one
table for the whole project and writes the same results as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import Comparison, Result, Stats, measure  # noqa: E402


def discover(only: list[str]) -> list[Path]:
    mods = sorted(HERE.glob("bench_*.py"))
    if only:
        mods = [m for m in mods if m.stem.removeprefix("bench_") in only]
    return mods


def load(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or 0.01 <= abs(v) < 100_000:
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:.3e}"


def print_table(results: list[Result]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text when rich is absent
        for r in results:
            print(r.comparison.name, fmt(r.ours.median), fmt(r.peer_value), fmt(r.ratio), r.error)
        return
    table = Table(title="Mycelium benchmarks (median of alternating repetitions; spread = ±half range)")
    for col in ("benchmark", "unit", "ours", "±%", "peer", "peer value", "±%", "ratio ours/peer"):
        table.add_column(col, overflow="fold")
    for r in results:
        c = r.comparison
        better = "higher is better" if c.higher_is_better else "lower is better"
        peer_name = c.peer.name if c.peer is not None else f"{c.reference_source} (published)"
        table.add_row(
            c.name,
            f"{c.unit} ({better})",
            fmt(r.ours.median) if not r.error else f"ERROR: {r.error}",
            f"{r.ours.spread_pct:.0f}" if not r.error else "",
            peer_name,
            fmt(r.peer_value),
            f"{r.peer.spread_pct:.0f}" if r.peer else "",
            fmt(r.ratio),
        )
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="library name (repeatable)")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), help="JSON output path")
    parser.add_argument("--repetitions", type=int, default=None, help="override every comparison's count")
    args = parser.parse_args(argv)
    results: list[Result] = []
    failed = False
    for path in discover(args.only):
        print(f"== {path.stem}", flush=True)
        with contextlib.ExitStack() as stack:
            try:
                comparisons: list[Comparison] = load(path).comparisons(stack)  # type: ignore[attr-defined]
            except Exception as exc:  # a broken setup is reported, the other modules still run
                traceback.print_exc()
                print(f"   setup failed: {exc}", flush=True)
                failed = True
                continue
            for comp in comparisons:
                if args.repetitions:
                    comp = attrs.evolve(comp, repetitions=args.repetitions)
                t0 = time.monotonic()
                try:
                    result = measure(comp, progress=lambda m: print(f"   {m}", flush=True))
                except Exception as exc:
                    traceback.print_exc()
                    result = Result(comp, Stats.of([0.0]), None, error=f"{type(exc).__name__}: {exc}")
                    failed = True
                print(f"   done in {time.monotonic() - t0:.1f}s: ratio {fmt(result.ratio)}", flush=True)
                results.append(result)
    print_table(results)
    args.json.write_text(json.dumps([r.as_json() for r in results], indent=2))
    print(f"results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
