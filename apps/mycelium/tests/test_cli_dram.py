"""``mycelium dram``: tracker detection on this kernel and throttle curve tables, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dram
from mycelium.cli import main


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mycelium.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_trackers_json_reports_every_tracker_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "dram", "trackers"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_name = {t["name"]: t for t in report["trackers"]}
    assert set(by_name) == {"uffd-wp", "soft-dirty", "hash-diff"}
    assert all(t["reason"] for t in by_name.values())
    # The CLI reports what the kernel did, the same answer the library's probes give.
    assert by_name["uffd-wp"]["available"] == dram.uffd_wp_available()[0]
    assert by_name["soft-dirty"]["available"] == dram.soft_dirty_available()[0]
    # hash-diff needs no kernel feature: the real scan of a memfd page must have seen the write.
    assert by_name["hash-diff"]["available"] is True
    expected_own = "uffd-wp" if by_name["uffd-wp"]["available"] else "hash-diff(crc32+adler32)"
    assert report["chosen_for_this_process"] == expected_own
    if not by_name["uffd-wp"]["available"]:
        assert "uffd-wp" in report["rejected_for_this_process"]
    expected_other = "soft-dirty" if by_name["soft-dirty"]["available"] else "hash-diff"
    assert report["chosen_for_another_process"] == expected_other


def test_trackers_human_output_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dram", "trackers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["TRACKER", "AVAILABLE", "TRACKS"]
    rows = {line.split()[0]: line.split()[1] for line in lines[2:5]}
    assert set(rows) == {"uffd-wp", "soft-dirty", "hash-diff"}
    assert set(rows.values()) <= {"yes", "no"}
    assert any(line.startswith("memory written by this process: ") for line in lines)


def test_linear_curve_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dram", "curve", "linear", "--threshold", "0.5", "--points", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "linear throttle curve: threshold 0.5, max fraction 0.99"
    rows = [(float(line.split()[0]), float(line.split()[1])) for line in out[2:7]]
    # zero up to the threshold, then linear up to 99 % at a full buffer
    assert rows == [(0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.75, 49.5), (1.0, 99.0)]
    assert "50 % at fill 0.753" in out[-1]


def test_exponential_curve_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--json",
        "dram",
        "curve",
        "exponential",
        "--threshold",
        "0.2",
        "--points",
        "21",
        "--steepness",
        "6",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["threshold"], report["steepness"]) == ("exponential", 0.2, 6.0)
    points = report["points"]
    assert len(points) == 21
    assert points[0]["fill"] == 0.0
    assert points[-1]["fill"] == 1.0
    fractions = [p["fraction"] for p in points]
    assert fractions == sorted(fractions)  # monotone
    assert all(p["fraction"] == 0.0 for p in points if p["fill"] <= 0.2)
    assert fractions[-1] == pytest.approx(0.99)
    # convex: the second half of the range above the threshold carries most of the throttle
    assert fractions[12] < 0.99 / 4
    assert set(report["fill_for"]) == {"0.1", "0.5", "0.9"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["linear", "--threshold", "1.5"], "--threshold"),
        (["linear", "--threshold", "abc"], "--threshold"),
        (["linear", "--threshold", "nan"], "--threshold"),
        (["linear", "--max-fraction", "2"], "--max-fraction"),
        (["exponential", "--steepness", "0"], "--steepness"),
        (["linear", "--steepness", "2"], "only for the exponential"),
        (["linear", "--points", "1"], "--points"),
        (["linear", "--points", "100000"], "--points"),
        (["cubic"], "invalid choice"),
    ],
)
def test_bad_curve_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(["dram", "curve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert expected in err


def test_a_real_process_prints_no_traceback_and_help_works() -> None:
    out = _cli("dram", "curve", "linear", "--threshold", "-1")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "threshold" in out.stderr
    for sub in ("trackers", "curve"):
        h = _cli("dram", sub, "--help")
        assert h.returncode == 0
        assert "--json" in h.stdout
    top = _cli("dram", "--help")
    assert "trackers" in top.stdout
