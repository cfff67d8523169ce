"""The README's example runs and prints what the README says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs_and_prints_its_story(tmp_path: Path) -> None:
    section = README.read_text().split("## Example", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "# HELP mycelium_blockstore_disk_used_bytes Bytes used on the data disk"
    assert lines[1] == "volume_attached n1 [REDACTED] True"
    assert lines[2] == "t=50min DiskAlmostFull firing value=92.50 GB"
    assert lines[3] == "disk full at t=80 min"
    assert "do-not-print" not in run.stdout + run.stderr
