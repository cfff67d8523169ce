"""The one entry point for the whole monorepo: tests, lint, typecheck, sim, bench, demo, docs, build.

Every session installs the packages it needs itself, so `pip install nox && nox -s <session>` works
on a fresh machine with Python 3.11 and pip. Sessions share one virtualenv per name and reuse it.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
# Dependency order: every library after the ones it imports (see docs/architecture.md).
LIBS = ["obs", "meshnet", "spore", "bftconsensus", "dram", "blockstore"]
PACKAGES = [f"libs/{name}" for name in LIBS] + ["apps/mycelium"]
SRC_DIRS = [f"libs/{name}/src/{name}" for name in LIBS] + ["apps/mycelium/src/mycelium"]
TEST_DIRS = [f"{pkg}/tests" for pkg in PACKAGES] + ["tests"]

TEST_DEPS = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "build>=1.2",
    "grpcio-tools>=1.62",
    "betterproto[compiler]==2.0.0b7",
    "pyroute2>=0.7.12",
    "playwright>=1.44",
    "lightkube>=0.15",
    "kubernetes-validate>=1.31",
    "types-PyYAML",
    "types-jsonschema",
    "opentelemetry-api>=1.20",
    "opentelemetry-sdk>=1.20",
    "cryptography>=42",
]
# Peers that only the benchmarks run next to our code.
BENCH_DEPS = ["swim-protocol>=0.6", "rich>=13", "uvloop>=0.19"]

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


def install_all(session: nox.Session, *extra: str) -> None:
    args: list[str] = []
    for pkg in PACKAGES:
        args += ["-e", pkg]
    session.install(*args, *extra)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """All packages' unit tests plus the cross-package tests in tests/ (every tier)."""
    install_all(session, *TEST_DEPS)
    session.run("pytest", *TEST_DIRS, *session.posargs)


@nox.session(python="3.11")
def sim(session: nox.Session) -> None:
    """Long deterministic-simulation runs (many more seeds than the test suite uses)."""
    install_all(session, "pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100")
    seeds = os.environ.get("MYCELIUM_SIM_SEEDS", "10000")
    session.run("pytest", "-m", "sim", *TEST_DIRS, *session.posargs, env={"MYCELIUM_SIM_SEEDS": seeds})


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree (generated _pb code excluded)."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict, one package at a time, so a package's types stand on their own."""
    install_all(session, "mypy>=1.10", *TEST_DEPS)
    for src in SRC_DIRS:
        session.run("mypy", "--strict", src)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks against real peers, run in the same session; prints one table, writes JSON.

    `nox -s bench -- --json results.json --only meshnet` (see `python bench/run.py --help`).
    """
    install_all(session, *TEST_DEPS, *BENCH_DEPS)
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The main job: a local multi-node network (`mycelium up`)."""
    install_all(session)
    session.run("mycelium", *(session.posargs or ["up"]))


@nox.session(python="3.11")
def build(session: nox.Session) -> None:
    """Build every package's wheel and sdist into dist/."""
    session.install("build>=1.2")
    for pkg in PACKAGES:
        session.run("python", "-m", "build", "--outdir", str(ROOT / "dist"), pkg)


@nox.session(python="3.11")
def proto(session: nox.Session) -> None:
    """Regenerate the committed betterproto code from every package's .proto files."""
    session.install("grpcio-tools>=1.62", "betterproto[compiler]==2.0.0b7")
    session.run("python", "tools/genproto.py", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Check that docs/ links resolve and that every library has its page."""
    session.run("python", "tools/checkdocs.py", external=True)
