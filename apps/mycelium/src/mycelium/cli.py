"""The ``mycelium`` command line: a thin layer over the app's objects.

Human output by default, ``--json`` for scripts; bad input ends with a one-line error and exit
status 2, never a traceback. Each capability registers its own subcommands from its module
(see ``COMMAND_MODULES``), so this file stays a dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from mycelium._errors import CLIError, MyceliumError

PACKAGES = (
    "mycelium",
    "mycelium-obs",
    "mycelium-meshnet",
    "mycelium-spore",
    "mycelium-bftconsensus",
    "mycelium-dram",
    "mycelium-blockstore",
)

# Modules that contribute subcommands through ``register(subparsers)``; added as capabilities land.
COMMAND_MODULES: tuple[str, ...] = (
    "mycelium.network_cli",
    "mycelium.node._cli",
    "mycelium.local._cli",
    "mycelium.k8s._cli",
    "mycelium.cli_bft",
    "mycelium.cli_volume",
    "mycelium.cli_dram",
)


class _Registers(Protocol):
    def register(self, sub: argparse._SubParsersAction[Any]) -> None: ...


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


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every error leaves through one place."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mycelium", description="Run and operate a Digital Mycelium Network.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("version", help="show the versions of the app and its libraries")
    p.set_defaults(func=_cmd_version)
    for name in COMMAND_MODULES:
        module: _Registers = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        result: int = args.func(args)
        return result
    except MyceliumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
