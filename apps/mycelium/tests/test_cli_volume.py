"""``mycelium volume``: create/list through the CLI entry point, serve to real NBD clients.

The serve tests start ``python -m mycelium.cli volume serve`` as a real process and talk to it
with ``nbdinfo`` and ``qemu-img`` (skipped, with the reason, where those are not installed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mycelium.cli import main

MiB = 1 << 20


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mycelium.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: cannot test with a real NBD client")


class Server:
    """A running ``mycelium volume serve`` process and the URI it announced."""

    def __init__(self, directory: Path, name: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mycelium.cli",
                "--json",
                "volume",
                "serve",
                name,
                "--dir",
                str(directory),
                "--port",
                "0",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"serve did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        self.ready = json.loads(line)
        self.uri: str = self.ready["uri"]

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a user would; returns (exit status, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, directory: Path, name: str, *extra: str) -> None:
            super().__init__(directory, name, *extra)
            started.append(self)

    yield Tracked
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=10)


def test_create_then_list_human_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert main(["volume", "create", "disk", "--size", "64M", "--chunk-size", "1M", "--dir", d]) == 0
    out = capsys.readouterr().out
    assert "64 MiB" in out
    assert "3 replica" in out
    assert main(["volume", "create", "small", "--size", "8M", "--replicas", "1", "--dir", d]) == 0
    capsys.readouterr()

    assert main(["volume", "list", "--dir", d]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "SIZE", "REPLICAS"]
    assert lines[1].split()[:5] == ["disk", "64", "MiB", "3", "1"]
    assert lines[2].split()[:4] == ["small", "8", "MiB", "1"]

    assert main(["--json", "volume", "list", "--dir", d]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["size"], r["replicas"], r["chunk_size"]) for r in rows] == [
        ("disk", 64 * MiB, 3, MiB),
        ("small", 8 * MiB, 1, 4 * MiB),
    ]
    assert rows[0]["policy"] == {"ack": "all", "min_replicas": 2}
    assert rows[1]["policy"] == {"ack": "all", "min_replicas": 1}
    assert all(r["serving"] is False and r["encryption"] is None for r in rows)
    # sparse: nothing written yet, so far less than the 3 x 64 MiB the replicas could hold
    assert rows[0]["allocated"] < MiB


def test_list_of_an_empty_dir_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["volume", "list", "--dir", str(tmp_path / "nothing")]) == 0
    assert "no volumes" in capsys.readouterr().out
    assert main(["volume", "list", "--dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["create", "disk", "--size", "1X"], "--size"),
        (["create", "disk", "--size", "-1G"], "--size"),
        (["create", "disk"], "--size"),
        (["create", "disk", "--size", "1000"], "multiple of block_size"),
        (["create", "bad/name", "--size", "1G"], "volume name"),
        (["create", "..", "--size", "1G"], "volume name"),
        (["create", "disk", "--size", "1G", "--replicas", "0"], "replicas=0"),
        (["create", "disk", "--size", "1G", "--replicas", "2", "--min-replicas", "3"], "min_replicas=3"),
        (["create", "disk", "--size", "1G", "--chunk-size", "3K"], "chunk_size"),
        (["create", "disk", "--size", "1G", "--encrypt"], "--key-file"),
        (["create", "disk", "--size", "1G", "--key-file", "k"], "--encrypt"),
        (["serve", "missing"], "no volume 'missing'"),
        (["serve", "disk", "--port", "70000"], "--port"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(["volume", *argv, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert expected in err
    assert not list(tmp_path.glob("*/volume.json")), "a refused create must not leave a volume behind"


def test_existing_volume_and_bad_key_file_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    assert main(["volume", "create", "disk", "--size", "4M", "--dir", d]) == 0
    assert main(["volume", "create", "disk", "--size", "8M", "--dir", d]) == 2
    assert "already exists" in capsys.readouterr().err
    short = tmp_path / "short.key"
    short.write_bytes(b"too short")
    assert (
        main(["volume", "create", "enc", "--size", "4M", "--encrypt", "--key-file", str(short), "--dir", d])
        == 2
    )
    assert "exactly 32 bytes" in capsys.readouterr().err


def test_a_real_process_prints_no_traceback_and_help_works(tmp_path: Path) -> None:
    out = _cli("volume", "create", "disk", "--size", "12Q", "--dir", str(tmp_path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "--size" in out.stderr
    for sub in ("create", "list", "serve"):
        h = _cli("volume", sub, "--help")
        assert h.returncode == 0
        assert "--dir" in h.stdout


def test_serve_to_real_nbd_clients_and_data_survives_restart(tmp_path: Path, serve: type[Server]) -> None:
    _need("nbdinfo", "qemu-img")
    d = str(tmp_path / "vols")
    assert main(["volume", "create", "disk", "--size", "4M", "--chunk-size", "1M", "--dir", d]) == 0
    src = tmp_path / "src.img"
    payload = os.urandom(4 * MiB)
    src.write_bytes(payload)

    server = serve(Path(d), "disk")
    assert server.uri.startswith("nbd://127.0.0.1:")
    assert server.uri.endswith("/disk")
    info = json.loads(
        subprocess.run(["nbdinfo", "--json", server.uri], capture_output=True, check=True).stdout
    )
    assert info["exports"][0]["export-size"] == 4 * MiB
    subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), server.uri], check=True)

    second = _cli("volume", "serve", "disk", "--dir", d, "--port", "0")
    assert second.returncode == 2
    assert "already being served" in second.stderr
    listed = json.loads(_cli("--json", "volume", "list", "--dir", d).stdout)
    assert listed[0]["serving"] is True
    assert listed[0]["allocated"] >= 3 * 4 * MiB  # three replicas now hold the data

    status, err = server.stop()
    assert status == 0, err
    assert "Traceback" not in err

    again = serve(Path(d), "disk")  # a new process: the data must come back from the replicas
    out = tmp_path / "out.img"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", again.uri, str(out)], check=True)
    assert out.read_bytes() == payload
    status, err = again.stop()
    assert status == 0, err


def test_encrypted_volume_keeps_only_ciphertext_and_refuses_a_wrong_key(
    tmp_path: Path, serve: type[Server]
) -> None:
    _need("qemu-img")
    d = tmp_path / "vols"
    key = tmp_path / "disk.key"
    created = _cli(
        "--json",
        "volume",
        "create",
        "sec",
        "--size",
        "1M",
        "--encrypt",
        "--key-file",
        str(key),
        "--dir",
        str(d),
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["key_created"] is True
    assert len(key.read_bytes()) == 32
    assert key.stat().st_mode & 0o077 == 0

    marker = b"mycelium-plaintext-marker-0123456789" * 100
    src = tmp_path / "src.img"
    src.write_bytes(marker.ljust(1 * MiB, b"\0"))
    server = serve(d, "sec")
    subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), server.uri], check=True)
    out = tmp_path / "out.img"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", server.uri, str(out)], check=True)
    assert out.read_bytes() == src.read_bytes()
    status, err = server.stop()
    assert status == 0, err
    stored = b"".join(f.read_bytes() for f in (d / "sec").rglob("*") if f.is_file())
    assert marker[:36] not in stored, "plaintext reached the replicas' files"

    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    refused = _cli("volume", "serve", "sec", "--dir", str(d), "--port", "0", "--key-file", str(wrong))
    assert refused.returncode == 2
    assert "not the key" in refused.stderr
    assert "Traceback" not in refused.stderr
    key.unlink()
    missing = _cli("volume", "serve", "sec", "--dir", str(d), "--port", "0")
    assert missing.returncode == 2
    assert "--key-file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_corrupt_spec_is_reported_not_crashed_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    assert main(["volume", "create", "good", "--size", "4M", "--dir", d]) == 0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "volume.json").write_text('{"format": 1, "name": "bad", "size": "huge"}')
    capsys.readouterr()
    assert main(["--json", "volume", "list", "--dir", d]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good"]["size"] == 4 * MiB
    assert "not a valid volume spec" in rows["bad"]["error"]
    assert main(["volume", "serve", "bad", "--dir", d, "--port", "0"]) == 2
    assert "not a valid volume spec" in capsys.readouterr().err
