"""``mycelium dram``: what live memory replication can use on this machine, and its throttle curves.

``trackers`` runs dram's own probes (``uffd_wp_available``, ``soft_dirty_available``, a real
hash-diff scan of a scratch memfd page, and ``choose_tracker`` on a scratch region), so the answer
is what the kernel actually did, never a guess from its version. ``curve`` prints the throttle a
curve applies at each buffer fill, the table an operator needs to pick a threshold.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
from typing import Any

from dram import (
    DramError,
    ExponentialCurve,
    HashDiffTracker,
    LinearCurve,
    MemoryRegion,
    ThrottleCurve,
    choose_tracker,
    soft_dirty_available,
    uffd_wp_available,
)
from mycelium._errors import CLIError, MyceliumError

__all__ = ["register"]

_MAX_POINTS = 1001
_BAR = 40


def register(sub: argparse._SubParsersAction[Any]) -> None:
    dram = sub.add_parser(
        "dram",
        help="live memory replication (dram): trackers, throttle curves",
        description="Inspect what dram can use on this machine and how its throttle curves behave.",
    )
    dram_sub = dram.add_subparsers(dest="dram_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )

    t = dram_sub.add_parser(
        "trackers",
        parents=[common],
        help="which dirty-page trackers work here, and why not",
        description="Probe every dirty-page tracker on this kernel and show which one dram would choose.",
    )
    t.set_defaults(func=_cmd_trackers)

    c = dram_sub.add_parser(
        "curve",
        parents=[common],
        help="print a throttle curve as a table",
        description="Throttle fraction (share of time the workload is held back) at each buffer fill.",
    )
    c.add_argument("kind", choices=("linear", "exponential"), help="curve shape")
    c.add_argument("--threshold", type=float, help="fill (0..1) above which throttling starts (default 0.5)")
    c.add_argument("--max-fraction", type=float, help="throttle at a full buffer, 0..1 (default 0.99)")
    c.add_argument("--steepness", type=float, help="exponential only: larger is later and harder (default 4)")
    c.add_argument(
        "--points", type=int, default=11, help=f"rows from fill 0 to 1, 2..{_MAX_POINTS} (default 11)"
    )
    c.set_defaults(func=_cmd_curve)


def _probe_hash_diff() -> tuple[bool, str]:
    """Run a real hash-diff scan on one shared page: write it and check the scan reports it."""
    try:
        region = MemoryRegion.memfd(mmap.PAGESIZE, name="mycelium-probe")
    except (OSError, DramError) as exc:
        return False, f"cannot create a memfd region: {exc}"
    try:
        tracker = HashDiffTracker(region)
        try:
            tracker.start()
            region.view[0] = 1
            got = tracker.collect()
        finally:
            tracker.close()
        if got != [0]:
            return False, f"a scan did not report the probe write (got {got})"
        return True, f"per-page digests ({tracker.name}); needs no kernel support, costs a full scan"
    except (OSError, DramError) as exc:
        return False, str(exc)
    finally:
        region.close()


def _own_choice() -> tuple[str, dict[str, str]]:
    region = MemoryRegion.anonymous(mmap.PAGESIZE)
    try:
        choice = choose_tracker(region)
        choice.tracker.close()
        return choice.tracker.name, dict(choice.rejected)
    finally:
        region.close()


def _cmd_trackers(args: argparse.Namespace) -> int:
    probes = [
        ("uffd-wp", "writes by this process", uffd_wp_available()),
        ("soft-dirty", "writes by another process", soft_dirty_available()),
        ("hash-diff", "memory shared via memfd or file", _probe_hash_diff()),
    ]
    try:
        own, rejected = _own_choice()
    except DramError as exc:
        raise MyceliumError(f"no dirty-page tracker works on this machine: {exc}") from None
    available = {name: ok for name, _, (ok, _) in probes}
    other = "soft-dirty" if available["soft-dirty"] else "hash-diff" if available["hash-diff"] else None
    kernel = f"{os.uname().sysname} {os.uname().release}"
    if args.json:
        report = {
            "kernel": kernel,
            "trackers": [
                {"name": name, "tracks": tracks, "available": ok, "reason": reason}
                for name, tracks, (ok, reason) in probes
            ],
            "chosen_for_this_process": own,
            "rejected_for_this_process": rejected,
            "chosen_for_another_process": other,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(f"dirty-page trackers on this machine ({kernel}):")
    rows = [("TRACKER", "AVAILABLE", "TRACKS", "WHY")]
    rows += [(name, "yes" if ok else "no", tracks, reason) for name, tracks, (ok, reason) in probes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    extra = "".join(f"; {name} rejected: {why}" for name, why in rejected.items())
    print(f"memory written by this process: {own} (dram's choose_tracker{extra})")
    if other == "hash-diff":
        print("memory written by another process: hash-diff, over memory shared through a memfd or file")
    elif other:
        print(f"memory written by another process: {other}")
    else:
        print("memory written by another process: no tracker works here")
    return 0


def _build_curve(args: argparse.Namespace) -> ThrottleCurve:
    kwargs: dict[str, float] = {}
    if args.threshold is not None:
        kwargs["threshold"] = args.threshold
    if args.max_fraction is not None:
        kwargs["max_fraction"] = args.max_fraction
    try:
        if args.kind == "linear":
            if args.steepness is not None:
                raise CLIError("--steepness: only for the exponential curve")
            return LinearCurve(**kwargs)
        if args.steepness is not None:
            kwargs["steepness"] = args.steepness
        return ExponentialCurve(**kwargs)
    except DramError as exc:
        option = str(exc).split(" ", 1)[0].replace("_", "-")
        raise CLIError(f"--{option}: {exc}") from None


def _describe(args: argparse.Namespace, curve: ThrottleCurve) -> str:
    fields = [f"threshold {curve.threshold:g}", f"max fraction {curve.fraction(1.0):g}"]
    if isinstance(curve, ExponentialCurve):
        fields.append(f"steepness {curve.steepness:g}")
    return f"{args.kind} throttle curve: " + ", ".join(fields)


def _cmd_curve(args: argparse.Namespace) -> int:
    if not 2 <= args.points <= _MAX_POINTS:
        raise CLIError(f"--points {args.points}: must be between 2 and {_MAX_POINTS}")
    curve = _build_curve(args)
    fills = [i / (args.points - 1) for i in range(args.points)]
    table = [(fill, curve.fraction(fill)) for fill in fills]
    top = curve.fraction(1.0)
    milestones = {f"{p:g}": curve.fill_for(p) for p in (0.1, 0.5, 0.9) if p <= top}
    if args.json:
        print(
            json.dumps(
                {
                    "kind": args.kind,
                    "threshold": curve.threshold,
                    "max_fraction": top,
                    **({"steepness": curve.steepness} if isinstance(curve, ExponentialCurve) else {}),
                    "points": [{"fill": f, "fraction": fr} for f, fr in table],
                    "fill_for": milestones,
                },
                indent=2,
            )
        )
        return 0
    print(_describe(args, curve))
    print("  FILL  THROTTLE")
    for fill, fraction in table:
        bar = "#" * round(fraction * _BAR)
        print(f"{fill:6.3f}  {fraction * 100:6.1f} %  {bar}".rstrip())
    if milestones:
        reach = ", ".join(f"{float(p) * 100:g} % at fill {f:.3f}" for p, f in milestones.items())
        print(f"throttle starts above fill {curve.threshold:g}; reaches {reach}")
    else:
        print(f"throttle starts above fill {curve.threshold:g}")
    return 0
