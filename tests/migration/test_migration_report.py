"""Report aggregation against hand-computed figures, and the printed report (rich and plain)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from gaia.cli.shadow_report import print_shadow_report
from gaia.validator.migration import (
    SHADOW_FAILURE_PATH,
    Mismatch,
    Route,
    ShadowRecord,
    normalise_path,
    summarise,
)
from gaia.validator.migration.report import percentile

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def shadow_record(
    primary: Route, primary_s: float, shadow_s: float, *mismatches: Mismatch
) -> ShadowRecord:
    return ShadowRecord(("run", "hk"), primary, primary_s, shadow_s, list(mismatches), T0)


RECORDS = [
    shadow_record(
        Route.LEGACY,
        2.0,
        1.0,
        Mismatch("leads[0].z.skill", "0.5", "0.6", 0.1, 0.01),
        Mismatch("leads[5].z.skill", "0.5", "0.8", 0.3, 0.02),
    ),
    shadow_record(
        Route.NEW,
        0.5,
        4.0,
        Mismatch("leads[1].t.rmse", "1.0", "<missing>", None, None),
        Mismatch("leads[2].z.skill", "0.1", "0.3", 0.2, 0.05),
    ),
    shadow_record(Route.LEGACY, 3.0, 1.5),
    shadow_record(
        Route.LEGACY, 6.0, 0.1, Mismatch(SHADOW_FAILURE_PATH, "<not compared>", "shadow failed: X")
    ),
]


@pytest.mark.parametrize(
    ("path", "normalised"),
    [
        ("leads[3].variables.z.skill", "leads[*].variables.z.skill"),
        ("[0][12].a", "[*][*].a"),
        ('levels["500"].t', 'levels["500"].t'),
        ("levels.500.t", "levels.500.t"),
        ("<root>", "<root>"),
    ],
)
def test_normalise_path(path: str, normalised: str) -> None:
    assert normalise_path(path) == normalised


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 9.0], 0.0) == 1.0 and percentile([1.0, 9.0], 1.0) == 9.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        percentile([1.0], 1.5)


def test_summarise_counts_groups_and_times_by_hand() -> None:
    report = summarise(RECORDS)
    assert (report.compared, report.with_mismatches) == (4, 3)
    assert (report.mismatch_total, report.shadow_failures) == (5, 1)
    assert not report.clean
    assert [(p.path, p.count) for p in report.paths] == [
        ("leads[*].z.skill", 3),
        (SHADOW_FAILURE_PATH, 1),
        ("leads[*].t.rmse", 1),
    ]
    skill = report.paths[0]
    assert (skill.max_abs_diff, skill.max_rel_diff) == (0.3, 0.05)
    assert skill.example.path == "leads[0].z.skill"
    assert (report.paths[2].max_abs_diff, report.paths[2].max_rel_diff) == (None, None)
    # legacy ran 2, 4, 3, 6 s; new ran 1, 0.5, 1.5 s (the failed shadow run is not a timing)
    assert report.legacy is not None and report.new is not None
    assert (report.legacy.route, report.legacy.runs) == (Route.LEGACY, 4)
    assert report.legacy.p50 == 3.5
    assert report.legacy.p95 == pytest.approx(5.7)
    assert (report.new.runs, report.new.p50) == (3, 1.0)
    assert report.new.p95 == pytest.approx(1.45)
    assert report.speedup == 3.5
    assert report.paired_speedup == 2.0  # median of 2/1, 4/0.5, 3/1.5


def test_a_clean_and_an_empty_report() -> None:
    clean = summarise([shadow_record(Route.NEW, 1.0, 3.0), shadow_record(Route.NEW, 1.0, 3.0)])
    assert clean.clean and clean.paths == () and clean.speedup == 3.0
    empty = summarise([])
    assert not empty.clean
    assert (empty.compared, empty.legacy, empty.new, empty.speedup) == (0, None, None, None)


@pytest.fixture(params=["rich", "plain"])
def table_style(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "250")
    if request.param == "plain":
        monkeypatch.setitem(sys.modules, "rich", None)  # makes `import rich...` fail
        monkeypatch.setitem(sys.modules, "rich.console", None)
        monkeypatch.setitem(sys.modules, "rich.table", None)
    return str(request.param)


def test_printing_a_report_with_mismatches(
    table_style: str, capsys: pytest.CaptureFixture[str]
) -> None:
    print_shadow_report(summarise(RECORDS))
    out = capsys.readouterr().out
    assert "Shadow comparison" in out and "comparisons" in out
    assert "leads[*].z.skill" in out and "leads[*].t.rmse" in out and "<shadow>" in out
    assert "speedup (legacy p50 / new p50)" in out and "3.5" in out
    assert "5 mismatches in 3 of 4 comparisons" in out
    assert "0 mismatches" not in out
    assert ("│" in out) is (table_style == "rich")  # the fixture really chose the printer


def test_printing_a_clean_report(table_style: str, capsys: pytest.CaptureFixture[str]) -> None:
    print_shadow_report(summarise([shadow_record(Route.LEGACY, 2.0, 1.0)] * 3))
    out = capsys.readouterr().out
    assert "0 mismatches in 3 comparisons" in out
    assert "Mismatches by path" not in out


def test_printing_shows_the_top_20_paths(
    table_style: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mismatches = [
        Mismatch(f"field_{n:02d}", "1.0", "2.0", 1.0, 0.5)
        for n in range(25)
        for _ in range(25 - n)  # field_00 most often, field_24 least
    ]
    print_shadow_report(summarise([shadow_record(Route.NEW, 1.0, 1.0, *mismatches)]))
    out = capsys.readouterr().out
    assert "top 20 of 25" in out
    assert "field_19" in out and "field_20" not in out


def test_printing_nothing_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    print_shadow_report(summarise([]))
    assert capsys.readouterr().out.strip() == "No shadow comparisons recorded."
