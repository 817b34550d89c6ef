"""Run and window aggregation: overall, per-run value with bonus and ties, window (spec 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gaia.tasks.weather.scoring.aggregate import (
    RunRecord,
    overall_score,
    run_values,
    window_scores,
)
from gaia.tasks.weather.scoring.config import AggregateConfig
from gaia.tasks.weather.scoring.era5 import Era5Result, Era5Status, LeadScore


def era5(average: float) -> Era5Result:
    lead = LeadScore(24, average * 10, None, None, None, None, (), ())
    return Era5Result(Era5Status.SCORED, average, (lead,))


def test_overall_before_any_era5_lead_is_the_day1_part() -> None:
    assert overall_score(True, None).value == 0.05
    assert overall_score(False, None).value == 0.0
    no_leads = Era5Result(Era5Status.SCORED, 0.0, ())
    assert overall_score(True, no_leads).value == 0.05


def test_overall_combines_era5_and_day1_pass() -> None:
    result = overall_score(True, era5(0.6))
    assert result.value == pytest.approx(0.95 * 0.6 + 0.05)
    assert result.era5_average == 0.6 and result.reason is None
    assert overall_score(False, era5(0.6)).value == pytest.approx(0.57)
    assert overall_score(True, era5(1.2)).value == 1.0  # clamped
    assert overall_score(True, era5(0.6)) == overall_score(True, era5(0.6))  # idempotent


def test_failed_era5_contributes_zero_with_its_reason() -> None:
    result = overall_score(True, Era5Result.failed("lead 48 h lacks variables ['q']"))
    assert result.value == 0.05 and result.era5_average is None
    assert result.reason == "ERA5 aggregation failed: lead 48 h lacks variables ['q']"


def test_bonus_goes_to_the_best_miner() -> None:
    values = run_values({"a": 0.8, "b": 0.5, "c": 0.0})
    assert values["a"].bonus == 0.05 and values["a"].value == pytest.approx(0.85)
    assert values["b"].value == 0.5 and values["c"].value == 0.0


def test_bonus_is_split_between_two_tied_and_dropped_beyond() -> None:
    two = run_values({"a": 0.8, "b": 0.8, "c": 0.3})
    assert two["a"].bonus == two["b"].bonus == 0.025 and two["c"].bonus == 0.0
    three = run_values({"a": 0.8, "b": 0.8, "c": 0.8})
    assert all(v.bonus == 0.0 for v in three.values())


def test_no_bonus_below_the_threshold_or_when_nobody_scored() -> None:
    assert run_values({"a": 0.69, "b": 0.1})["a"].bonus == 0.0
    config = AggregateConfig(bonus_min_score=0.0)
    assert run_values({"a": 0.05, "b": 0.01}, config)["a"].bonus == 0.0  # nobody above 0.05
    assert run_values({"a": 0.06, "b": 0.01}, config)["a"].bonus == 0.05


def test_per_run_value_is_clipped() -> None:
    config = AggregateConfig(bonus=0.3)
    assert run_values({"a": 1.0}, config)["a"].value == 1.1
    assert run_values({"a": -0.2})["a"].value == 0.0
    assert run_values({}) == {}
    with pytest.raises(ValueError, match="overall score of a is not finite"):
        run_values({"a": float("nan")})


NOW = datetime(2025, 6, 20, 12, tzinfo=UTC)


def run(days_ago: float, values: dict[str, float]) -> RunRecord:
    return RunRecord(f"run-{days_ago}", NOW - timedelta(days=days_ago), values)


def test_window_mean_counts_missed_runs_as_zero() -> None:
    runs = [
        run(1, {"a": 0.9, "b": 0.3}),
        run(7, {"a": 0.6}),  # b missed this run
        run(15, {"a": 0.3, "b": 0.6}),  # exactly on the window edge: included
        run(16, {"a": 0.0, "b": 1.0}),  # too old
        run(-1, {"a": 0.0, "b": 1.0}),  # not initialised yet
    ]
    scores = window_scores(runs, NOW)
    assert scores["a"] == pytest.approx((0.9 + 0.6 + 0.3) / 3)
    assert scores["b"] == pytest.approx((0.3 + 0.0 + 0.6) / 3)
    assert window_scores(runs, NOW, miners=["c"]) == {"c": 0.0}


def test_window_without_runs_and_naive_times() -> None:
    assert window_scores([], NOW, miners=["a"]) == {"a": 0.0}
    assert window_scores([], NOW) == {}
    with pytest.raises(ValueError, match="timezone-aware"):
        window_scores([], datetime(2025, 6, 20))
    with pytest.raises(ValueError, match="run naive"):
        window_scores([RunRecord("naive", datetime(2025, 6, 19), {})], NOW)
