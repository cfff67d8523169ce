"""The ``mycelium`` command line: a thin layer over the app's objects.

Human output by default, ``--json`` for scripts; bad input ends with a one-line error and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

PACKAGES = (
    "mycelium",
    "mycelium-obs",
    "mycelium-meshnet",
    "mycelium-spore",
    "mycelium-bftconsensus",
    "mycelium-dram",
    "mycelium-blockstore",
)


def _versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _cmd_version(args: argparse.Namespace) -> int:
    versions = _versions()
    if args.json:
        print(json.dumps(versions, indent=2))
    else:
        width = max(map(len, versions))
        for name, ver in versions.items():
            print(f"{name:<{width}}  {ver}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mycelium",
        description="Run and operate a Digital Mycelium Network.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="show the versions of the app and its libraries")
    p.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
