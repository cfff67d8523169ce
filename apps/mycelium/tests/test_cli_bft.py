"""`mycelium bft exec`: a verdict from real commit-reveal cores, and the trust it moves."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import pytest

from mycelium.cli import main
from mycelium.globaldb import NetworkDB, SQLiteStore


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["--json", "bft", "exec", *args])
    return code, json.loads(capsys.readouterr().out)


def test_the_honest_majority_wins_and_the_liar_loses_trust(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "--input", "block", "--ops", "12", "--executors", "5", "--faulty", "1")
    assert code == 0
    assert doc["accepted"] is True
    ranking = doc["trust"]
    assert isinstance(ranking, list)
    assert ranking[-1]["node"] == "exec0"  # the liar ends last
    assert ranking[-1]["trust"] < ranking[0]["trust"]


def test_the_result_is_the_real_function_of_the_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "--input", "abc", "--faulty", "0")
    assert code == 0
    assert doc["result"] == hashlib.sha256(b"abc").hexdigest()
    assert doc["dissenting"] == []


def test_silent_executors_leave_signed_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "--executors", "5", "--faulty", "0", "--silent", "2", "--ops", "3")
    assert code == 0
    assert doc["accepted"] is True


def test_bad_counts_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bft", "exec", "--executors", "3", "--faulty", "4"]) == 2
    err = capsys.readouterr().err
    assert "must fit" in err
    assert "Traceback" not in err


def test_trust_scores_land_in_the_global_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = tmp_path / "g.sqlite"
    code, _doc = run_json(capsys, "--ops", "5", "--globaldb", f"sqlite:{db_path}", "--network-id", "net1")
    assert code == 0

    async def read() -> dict[str, float]:
        async with SQLiteStore(db_path) as store:
            return {v.value.node_id: v.value.score for v in await NetworkDB(store, "net1").trust.list()}

    scores = anyio.run(read)
    assert set(scores) == {f"exec{i}" for i in range(5)}
    assert min(scores, key=scores.__getitem__) == "exec0"
