"""The graded synthetic miners rank as documented under the real scoring: skilful > noisy > biased.

A small run (3 deg, 11 miners: two of each graded kind plus the defects) is scored stage by stage
with the domain code the pipeline uses (loader, fast scorer, level aggregation, ERA5 and day-1
scores, overall), and every skilful miner must score above every noisy one, every noisy one above
every biased one. The biased grade is the one that matters: a constant offset is free under the
scorer's bias correction, so only its fixed large-scale error pattern can put it last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from gaia.tasks.weather.compute import score_day1_fields, score_fields
from gaia.tasks.weather.data.grid import regular_grid
from gaia.tasks.weather.data.loader import ForecastLoader, Stage, stream_leads
from gaia.tasks.weather.data.stores import RunLayout
from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.scoring.aggregate import OverallScore, overall_score
from gaia.tasks.weather.scoring.day1 import Day1Result, Day1Status
from gaia.tasks.weather.scoring.era5 import Era5Result, Era5Status, score_era5
from gaia.tasks.weather.scoring.levels import VariableScore, aggregate_levels
from gaia.tasks.weather.synth import generate_run
from gaia.tasks.weather.synth.grades import plan_miners
from gaia.tasks.weather.synth.modes import SphereBasis
from gaia.tasks.weather.synth.systematic import ZONAL_SHARE, systematic_modes
from gaia.tasks.weather.variables import DAY1_LEAD_HOURS, DAY1_VARIABLES, ERA5_LEAD_HOURS

GRADED = ("skilful", "noisy", "biased")


@dataclass(frozen=True)
class MinerScore:
    grade: str
    day1: Day1Result
    era5: Era5Result
    overall: OverallScore


def _era5_variables(layout: RunLayout, hotkey: str) -> dict[int, list[VariableScore]]:
    leads: dict[int, list[VariableScore]] = {}
    for lead in stream_leads(layout, hotkey, Stage.ERA5):
        by_variable: dict[str, list[FieldInputs]] = {}
        for inputs in lead.fields:
            by_variable.setdefault(inputs.variable, []).append(inputs)
        leads[lead.lead_hours] = [
            aggregate_levels(score_fields(fields, "fast")) for fields in by_variable.values()
        ]
    return leads


def _score(layout: RunLayout, hotkey: str, grade: str) -> MinerScore:
    with ForecastLoader(layout, hotkey, Stage.DAY1) as loader:
        day1_lead = loader.load(DAY1_LEAD_HOURS)
    assert not day1_lead.skipped, f"{hotkey}: day-1 fields skipped {day1_lead.skipped}"
    day1 = score_day1_fields(day1_lead.fields, "fast")
    era5 = score_era5(_era5_variables(layout, hotkey))
    return MinerScore(grade, day1, era5, overall_score(day1.passed, era5))


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MinerScore]:
    root = tmp_path_factory.mktemp("graded") / "run"
    layout = generate_run(root, seed=7, resolution=3.0, miners=11)
    expected = json.loads(layout.expected_json.read_text())
    assert expected["grade_order"] == list(GRADED)
    return {
        hotkey: _score(layout, hotkey, entry["grade"])
        for hotkey, entry in sorted(expected["miners"].items())
        if entry["grade"] in GRADED
    }


def test_each_grade_has_two_miners_with_different_recipes() -> None:
    plans = [p for p in plan_miners(11) if p.grade.value in GRADED]
    for grade in GRADED:
        recipes = {p.recipe for p in plans if p.grade.value == grade}
        assert len(recipes) == 2, grade


def test_graded_miners_pass_day1_with_every_variable_scored(
    scores: dict[str, MinerScore],
) -> None:
    for hotkey, score in scores.items():
        day1 = score.day1
        assert day1.status is Day1Status.SCORED and day1.passed and not day1.clamped, hotkey
        assert len(day1.variables) == len(DAY1_VARIABLES)
        unscored = [v.reason for v in day1.variables if not v.scored]
        assert unscored == [], f"{hotkey}: sanity checks failed: {unscored}"
        assert all(v.penalty == 0.0 for v in day1.variables), hotkey


def test_graded_miners_are_scored_at_every_era5_lead(scores: dict[str, MinerScore]) -> None:
    for hotkey, score in scores.items():
        assert score.era5.status is Era5Status.SCORED, (hotkey, score.era5.reason)
        assert [lead.lead_hours for lead in score.era5.leads] == list(ERA5_LEAD_HOURS)
        assert all(not lead.failed_variables for lead in score.era5.leads), hotkey
        assert score.overall.reason is None and score.overall.day1_pass


def test_skilful_beat_noisy_beat_biased_on_overall(scores: dict[str, MinerScore]) -> None:
    overall = {
        grade: sorted(s.overall.value for s in scores.values() if s.grade == grade)
        for grade in GRADED
    }
    report = {grade: [round(v, 3) for v in values] for grade, values in overall.items()}
    assert all(len(values) == 2 for values in overall.values()), report
    assert min(overall["skilful"]) > max(overall["noisy"]), report
    assert min(overall["noisy"]) > max(overall["biased"]), report
    # Not a photo finish: the grades are apart by a clear margin, and in plausible ranges.
    assert min(overall["skilful"]) - max(overall["noisy"]) > 0.05, report
    assert min(overall["noisy"]) - max(overall["biased"]) > 0.05, report
    assert min(overall["skilful"]) > 0.8 and max(overall["biased"]) > 0.2, report


def test_biased_miners_lose_skill_that_bias_correction_cannot_restore(
    scores: dict[str, MinerScore],
) -> None:
    """By 240 h the biased miners' error left after bias correction exceeds the anomaly variance
    in most variables: almost no skill left, while the others keep some."""
    last_skill: dict[str, list[float]] = {"biased": [], "other": []}
    for score in scores.values():
        term = score.era5.leads[-1].skill_term
        assert term is not None
        last_skill["biased" if score.grade == "biased" else "other"].append(term)
    assert max(last_skill["biased"]) < 0.15, last_skill
    assert min(last_skill["other"]) > max(last_skill["biased"]) + 0.1, last_skill


def test_systematic_pattern_is_fixed_unit_spread_and_grid_independent() -> None:
    modes = systematic_modes(np.random.default_rng(5), levels=3)
    fine, coarse = regular_grid(1.0), regular_grid(3.0)
    basis = SphereBasis(fine.lat, fine.lon)
    field = basis.evaluate(modes, 0.0)
    np.testing.assert_allclose(basis.evaluate(modes, 1000.0), field)  # the same at every time
    weights = np.cos(np.deg2rad(fine.lat))[:, None] * np.ones(fine.lon.size)

    def spread(plane: np.ndarray) -> float:
        mean = np.sum(weights * plane) / np.sum(weights)
        return float(np.sqrt(np.sum(weights * (plane - mean) ** 2) / np.sum(weights)))

    for level in range(3):
        total = spread(field[level])
        zonal_mean = field[level].mean(axis=1, keepdims=True)
        zonal = spread(np.broadcast_to(zonal_mean, field[level].shape))
        assert total == pytest.approx(1.0, rel=0.01)
        assert zonal**2 / total**2 == pytest.approx(ZONAL_SHARE, rel=0.01)
    small = SphereBasis(coarse.lat, coarse.lon).evaluate(modes, 0.0)
    np.testing.assert_allclose(field[:, ::3, ::3], small, rtol=1e-9, atol=1e-12)
