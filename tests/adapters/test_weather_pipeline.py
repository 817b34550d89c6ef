"""The weather main job end to end: a synthetic run through the SQLite queue, the WorkerPool and
the ProcessPool into the results store; every graded miner gets its documented status."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gaia.tasks.weather.results import MinerRow
from gaia.validator.adapters.weather.runner import RunSettings, score_run


def settings(data: Path, rollout: str = "new=1,shadow=off") -> RunSettings:
    return RunSettings(
        queue_url=f"sqlite:///{data / 'queue.db'}",
        results_url=f"sqlite:///{data / 'results.db'}",
        shadow_log=data / "shadow.db",
        rollout=rollout,
        concurrency=4,
        process_workers=2,
    )


def by_grade(run_dir: Path, rows: list[MinerRow]) -> dict[str, MinerRow]:
    grades = json.loads((run_dir / "expected.json").read_text())["miners"]
    return {grades[row.hotkey]["grade"]: row for row in rows}


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    connection = sqlite3.connect(path)
    tables = [
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    contents = {
        t: sorted(map(tuple, connection.execute(f"SELECT * FROM {t}")), key=repr)
        for t in tables
        if t not in ("window_scores", "window_runs")
    }
    connection.close()
    return contents


@pytest.mark.slow
async def test_graded_miners_get_their_documented_status(small_run: Path, tmp_path: Path) -> None:
    rows = await score_run(small_run, settings(tmp_path))
    grade = by_grade(small_run, rows)
    assert len(rows) == 8

    skilful = grade["skilful"]
    assert skilful.status == "scored" and skilful.day1_pass
    assert set(skilful.era5_leads) == {24, 48, 72, 96, 120, 144, 168, 192, 216, 240}
    assert skilful.overall is not None and skilful.overall > 0.5

    clone = grade["clone"]
    assert clone.day1_score is not None and clone.day1_score <= 0.05 and not clone.day1_pass

    corrupted = grade["corrupted_chunk"]
    assert corrupted.status.startswith("verification failed")
    assert corrupted.day1_score == 0.0

    missing = grade["missing_variable"]
    assert missing.status.startswith("failed") and "10v" in missing.status

    units = grade["wrong_units"]
    assert units.day1_pass, "day-1 converts units automatically"
    assert units.status.startswith("failed") and "units" in units.status

    border = grade["nan_border"]
    assert border.status == "scored", "edge salvage repairs the NaN border row"

    for row in (grade["skilful"], grade["noisy"], grade["biased"]):
        assert row.overall is not None and row.run_value is not None


@pytest.mark.slow
async def test_rescoring_a_run_changes_nothing(small_run: Path, tmp_path: Path) -> None:
    first = await score_run(small_run, settings(tmp_path))
    before = dump(tmp_path / "results.db")
    second = await score_run(small_run, settings(tmp_path))
    assert second == first
    assert dump(tmp_path / "results.db") == before
