"""The README's example runs and prints what it promises (the wheel test runs it in a fresh venv)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs_and_shows_peer_info_and_a_refusal(tmp_path: Path) -> None:
    section = README.read_text().split("## Example", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "hello node, you are " in run.stdout
    assert "PeerInfo(node_id=" in run.stdout
    assert "refused: wrong_network" in run.stdout
