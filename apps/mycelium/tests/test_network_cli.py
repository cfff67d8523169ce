"""Founding a network and admitting nodes: `mycelium network create | show | enrol`, seed checks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meshnet import NetworkTrust
from mycelium.cli import main
from mycelium.network_cli import SeedError, load_master_seed


def create(tmp_path: Path, name: str = "net", *entry: str) -> Path:
    d = tmp_path / name
    args = ["network", "create", "--dir", str(d), "--name", name]
    for ep in entry:
        args += ["--entry-point", ep]
    assert main(args) == 0
    return d


def test_create_writes_a_secret_key_a_trust_file_and_a_valid_master_seed(tmp_path: Path) -> None:
    d = create(tmp_path, "net", "127.0.0.1:7400")
    assert stat.S_IMODE((d / "network.key").stat().st_mode) == 0o600
    seed = load_master_seed(d / "master.seed", NetworkTrust.load(d / "trust.json"))
    assert seed.entry_points == ("127.0.0.1:7400",)


def test_create_refuses_to_replace_an_existing_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = create(tmp_path)
    assert main(["network", "create", "--dir", str(d)]) == 2
    assert "refusing to replace" in capsys.readouterr().err


def test_a_seed_from_another_network_is_refused(tmp_path: Path) -> None:
    a, b = create(tmp_path, "a"), create(tmp_path, "b")
    with pytest.raises(SeedError, match="is for network"):
        load_master_seed(b / "master.seed", NetworkTrust.load(a / "trust.json"))


def test_a_tampered_or_expired_seed_is_refused(tmp_path: Path) -> None:
    d = create(tmp_path, "net", "127.0.0.1:7400")
    trust = NetworkTrust.load(d / "trust.json")
    raw = (d / "master.seed").read_bytes()
    (d / "evil.seed").write_bytes(raw.replace(b"127.0.0.1:7400", b"127.0.0.1:6666"))
    with pytest.raises(SeedError, match="not signed"):
        load_master_seed(d / "evil.seed", trust)
    with pytest.raises(SeedError, match="expired"):
        load_master_seed(d / "master.seed", trust, now=4e9)
    (d / "junk.seed").write_bytes(b"\x00garbage")
    with pytest.raises(SeedError):
        load_master_seed(d / "junk.seed", trust)


def test_enrol_gives_a_sclerotium_its_countersigned_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = create(tmp_path)
    capsys.readouterr()
    node = tmp_path / "s1"
    args = ["--json", "network", "enrol", "--dir", str(d), "--node-dir", str(node), "--role", "sclerotium"]
    assert main([*args, "--address", "127.0.0.1:7400"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["role"] == "dedicated-sclerotium"
    assert (node / "sclerotium.spore").exists()
    assert stat.S_IMODE((node / "node.key").stat().st_mode) == 0o600
    assert main([*args]) == 2  # the directory already holds a node


@pytest.mark.integration
def test_a_single_sclerotium_is_a_whole_network(tmp_path: Path) -> None:
    """R11.2: one Sclerotium alone forms a network and reports ready."""
    out = subprocess.run(
        [sys.executable, "-m", "mycelium.cli", "up", "--dir", str(tmp_path / "one"), "--nodes", "1,0,0",
         "--exit-when-ready", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is up (1 nodes)" in out.stdout
