"""The CLI as a user meets it: through the installed ``mycelium`` command."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from mycelium.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("mycelium")
    if exe is None:
        pytest.skip("the mycelium console script is not installed (pip install -e apps/mycelium)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def test_version_lists_the_app_and_every_library() -> None:
    out = run("version")
    assert out.returncode == 0, out.stderr
    for name in ("mycelium", "mycelium-obs", "mycelium-meshnet", "mycelium-blockstore"):
        assert name in out.stdout


def test_json_output_is_machine_readable() -> None:
    out = run("--json", "version")
    assert out.returncode == 0
    assert json.loads(out.stdout)["mycelium-obs"] != "not installed"


def test_unknown_command_is_a_one_line_error_not_a_traceback() -> None:
    out = run("frobnicate")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "invalid choice" in out.stderr


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "version" in capsys.readouterr().out
