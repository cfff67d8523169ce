"""Each library's wheel installs ALONE (plus the wheels of the libraries it depends on) into a
fresh virtual environment, imports, and runs the example from its README: how users consume it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBS = ["obs", "meshnet", "spore", "bftconsensus", "dram", "blockstore"]

pytestmark = pytest.mark.integration


def readme_example(lib: str) -> str:
    """The first ```python block after the '## Example' heading of the library's README."""
    text = (ROOT / "libs" / lib / "README.md").read_text()
    section = text.split("## Example", 1)
    assert len(section) == 2, f"libs/{lib}/README.md has no '## Example' section"
    match = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert match, f"libs/{lib}/README.md has no python block under '## Example'"
    return match.group(1)


def local_deps(lib: str) -> list[str]:
    project = tomllib.loads((ROOT / "libs" / lib / "pyproject.toml").read_text())["project"]
    deps = [d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]]
    return [d.removeprefix("mycelium-") for d in deps if d.startswith("mycelium-")]


def closure(lib: str) -> list[str]:
    seen: list[str] = []
    for dep in local_deps(lib):
        for d in [*closure(dep), dep]:
            if d not in seen:
                seen.append(d)
    return [*seen, lib]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    built: dict[str, Path] = {}
    for lib in LIBS:
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT / "libs" / lib)],
            check=True,
            capture_output=True,
        )
        (wheel,) = out.glob(f"mycelium_{lib}-*.whl")
        built[lib] = wheel
    return built


@pytest.mark.parametrize("lib", LIBS)
def test_library_wheel_installs_alone_and_runs_its_readme_example(
    lib: str, wheels: dict[str, Path], tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", *[str(wheels[d]) for d in closure(lib)]],
        check=True,
        capture_output=True,
    )
    # The example runs from an empty directory: nothing of the monorepo on sys.path.
    script = tmp_path / "example.py"
    script.write_text(readme_example(lib))
    run = subprocess.run([str(py), str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    others = set(LIBS) - set(closure(lib))
    listed = subprocess.run([str(py), "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout
    assert not [o for o in others if f"mycelium-{o}" in listed], listed


def test_dependency_closure_follows_the_declared_dependencies() -> None:
    assert closure("obs") == ["obs"]
    assert closure("meshnet")[-1] == "meshnet"
    assert "obs" in closure("meshnet")
