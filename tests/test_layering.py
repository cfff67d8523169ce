"""The dependency rules of docs/architecture.md, enforced on the source: obs <- meshnet <- the
four middle libraries <- apps/mycelium. A library imports only what is to its left, the middle
four never import each other, and no library imports ``mycelium``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"obs", "meshnet", "spore", "bftconsensus", "dram", "blockstore", "mycelium"}
ALLOWED: dict[str, set[str]] = {
    "obs": set(),
    "meshnet": {"obs"},
    "spore": {"obs", "meshnet"},
    "bftconsensus": {"obs", "meshnet"},
    "dram": {"obs", "meshnet"},
    "blockstore": {"obs", "meshnet"},
    "mycelium": {"obs", "meshnet", "spore", "bftconsensus", "dram", "blockstore"},
}


def package_sources(name: str) -> list[Path]:
    base = ROOT / ("apps" if name == "mycelium" else "libs") / name / "src" / name
    return sorted(base.rglob("*.py"))


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def forbidden_imports(name: str) -> list[str]:
    problems = []
    for src in package_sources(name):
        for mod in imported_top_levels(src) & OURS - {name} - ALLOWED[name]:
            problems.append(f"{src.relative_to(ROOT)} imports {mod}")
    return problems


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_package_imports_only_what_the_dependency_rules_allow(name: str) -> None:
    assert package_sources(name), f"no sources found for {name}"
    assert forbidden_imports(name) == []


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import mycelium.cli\nfrom spore import x\nfrom . import local\n")
    assert imported_top_levels(bad) == {"mycelium", "spore"}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_declared_dependencies_match_the_rules(name: str) -> None:
    """pyproject dependencies on our own packages are exactly the allowed ones (or fewer)."""
    import tomllib

    folder = ROOT / ("apps" if name == "mycelium" else "libs") / name
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    ours = {
        dep.split(">")[0].split("=")[0].split("<")[0].strip().removeprefix("mycelium-")
        for dep in project["dependencies"]
        if dep.startswith("mycelium")
    }
    assert ours <= ALLOWED[name]
