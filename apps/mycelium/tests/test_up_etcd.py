"""`mycelium up --etcd`: the same network with a real etcd as its Global DB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_up_with_a_real_etcd_registers_sclerotia_and_the_primary_spore(
    etcd_single: Any, tmp_path: Path
) -> None:
    endpoint = etcd_single.endpoints[0].removeprefix("http://")
    home = tmp_path / "net"
    out = subprocess.run(
        [sys.executable, "-m", "mycelium.cli", "up", "--dir", str(home), "--nodes", "2,1,0",
         "--etcd", f"etcd://{endpoint}", "--exit-when-ready", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"etcd://{endpoint}" in out.stdout
    keys = subprocess.run(
        ["etcdctl", "--endpoints", endpoint, "get", "--prefix", "/mycelium/", "--keys-only"],
        capture_output=True, text=True, timeout=30, check=True, env={**os.environ, "ETCDCTL_API": "3"},
    ).stdout.split()  # fmt: skip
    assert sum("/sclerotia/" in k for k in keys) == 2, keys
    assert sum("/primary/" in k for k in keys) == 2, keys
