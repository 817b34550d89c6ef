"""ERA5 stage: per-lead score S_h with the upper-median R, fallbacks, failures (spec 4, 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.scoring.aggregate import overall_score
from gaia.tasks.weather.scoring.config import Era5Config
from gaia.tasks.weather.scoring.era5 import (
    Era5Status,
    combine_terms,
    score_era5,
    score_lead,
    upper_median,
)
from gaia.tasks.weather.scoring.kernels import FastScorer
from gaia.tasks.weather.scoring.levels import VariableScore, VariableStatus, aggregate_variables
from gaia.tasks.weather.variables import ALL_VARIABLES, LEVELS, PRESSURE_VARIABLES

SCORED, FAILED = VariableStatus.SCORED, VariableStatus.FAILED


def variable(
    name: str, rmse: float = 1.0, acc: float = 0.5, skill: float = 0.5, lead: int = 24
) -> VariableScore:
    return VariableScore(name, lead, rmse, acc, skill, SCORED)


def test_upper_median() -> None:
    assert upper_median([3.0, 1.0, 2.0]) == 2.0
    assert upper_median([4.0, 1.0, 3.0, 2.0]) == 3.0  # sorted[4 // 2]
    assert upper_median([7.0]) == 7.0
    with pytest.raises(ValueError):
        upper_median([])


def test_lead_score_by_hand() -> None:
    lead = score_lead(
        24,
        [
            variable("2t", rmse=1.0, acc=0.6, skill=0.5),
            variable("msl", rmse=2.0, acc=0.2, skill=1.2),
            variable("z", rmse=4.0, acc=-1.0, skill=-math.inf),
        ],
    )
    # s: clamp -> 0.5, 1, 0 -> 0.5; a: 0.8, 0.6, 0 -> 1.4/3; R = sorted[1] = 2:
    # e = mean(1/1.5, 1/2, 1/3) = 0.5
    assert lead.skill_term == pytest.approx(0.5)
    assert lead.acc_term == pytest.approx(1.4 / 3)
    assert lead.error_scale == 2.0
    assert lead.error_term == pytest.approx(0.5)
    assert lead.value == pytest.approx(0.6 * 0.5 + 0.3 * 1.4 / 3 + 0.1 * 0.5)
    assert lead.scored_variables == ("2t", "msl", "z")


def test_failed_variables_are_left_out_and_listed() -> None:
    broken = VariableScore(
        "q", 24, math.nan, math.nan, 0.0, FAILED, "ACC is NaN at levels [50] hPa"
    )
    lead = score_lead(24, [variable("2t", skill=0.8, acc=0.0), broken])
    assert lead.scored_variables == ("2t",)
    assert lead.failed_variables == (("q", "ACC is NaN at levels [50] hPa"),)
    # one variable: s = 0.8, a = 0.5, R = its own RMSE so e = 1/2
    assert lead.value == pytest.approx(0.6 * 0.8 + 0.3 * 0.5 + 0.1 * 0.5)


def test_zero_error_scale() -> None:
    lead = score_lead(
        24, [variable("2t", rmse=0.0), variable("10u", rmse=0.0), variable("v", rmse=3.0)]
    )
    assert lead.error_scale == 0.0
    assert lead.error_term == pytest.approx(2 / 3)  # perfect ones score 1, the other 0


def test_fallbacks_and_clamp() -> None:
    config = Era5Config()
    assert combine_terms(0.5, 0.5, None, config) == pytest.approx(0.6 * 0.5 + 0.4 * 0.5)
    assert combine_terms(None, 0.7, None, config) == 0.7
    assert combine_terms(None, None, 0.3, config) == 0.3
    assert combine_terms(None, None, None, config) == 0.0
    assert score_lead(24, []).value == 0.0
    heavy = Era5Config(skill_weight=2.0)
    assert combine_terms(1.0, 1.0, 1.0, heavy) == 1.0


def test_era5_average_divides_by_ten_leads() -> None:
    leads = {
        24: [variable(name, skill=1.0, acc=1.0, rmse=1.0) for name in ALL_VARIABLES],
        48: [variable(name, skill=0.0, acc=-1.0, rmse=1.0, lead=48) for name in ALL_VARIABLES],
    }
    result = score_era5(leads)
    assert result.status is Era5Status.SCORED
    # lead 24: 0.6 + 0.3 + 0.1 * 0.5 = 0.95; lead 48: 0.1 * 0.5 = 0.05; others not scored yet
    assert [s.value for s in result.leads] == pytest.approx([0.95, 0.05])
    assert result.average == pytest.approx(1.0 / 10)


def test_missing_variable_fails_the_aggregation_with_reason() -> None:
    complete = [variable(name) for name in ALL_VARIABLES]
    partial = [variable(name, lead=48) for name in ALL_VARIABLES if name not in ("q", "10v")]
    result = score_era5({24: complete, 48: partial})
    assert result.status is Era5Status.FAILED and result.average is None
    assert result.reason == "lead 48 h lacks variables ['10v', 'q']"
    assert [s.lead_hours for s in result.leads] == [24]


def test_caller_errors_are_refused() -> None:
    with pytest.raises(ValueError, match=r"leads \[36\] h"):
        score_era5({36: []})
    with pytest.raises(ValueError, match="given twice"):
        score_lead(24, [variable("2t"), variable("2t")])
    with pytest.raises(ValueError, match="is for \\+48h"):
        score_lead(24, [variable("2t", lead=48)])


def lead_fields(seed: int, perfect: bool) -> list[FieldInputs]:
    """All 9 variables (13 levels each for pressure variables) at +24 h on a 7.5 deg grid."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(90, -90, 25)
    phi, lam = np.deg2rad(lat)[:, None], np.deg2rad(np.arange(48) * 7.5)[None, :]
    fields = []
    for name in ALL_VARIABLES:
        for level in LEVELS if name in PRESSURE_VARIABLES else (None,):
            truth = 10.0 + np.cos(2 * phi) * np.sin(lam + rng.uniform(0, 6))
            climatology = 10.0 + 0.5 * np.cos(2 * phi) * np.ones_like(lam)
            error = 0.0 if perfect else 0.3 * rng.standard_normal(truth.shape)
            fields.append(
                FieldInputs(name, level, 24, truth + error, truth, climatology, None, lat)
            )
    return fields


def test_perfect_forecast_scores_one_at_its_lead() -> None:
    scorer = FastScorer()
    variables = aggregate_variables([scorer.score(f) for f in lead_fields(0, perfect=True)])
    result = score_era5({24: variables})
    lead = result.leads[0]
    assert (lead.skill_term, lead.acc_term, lead.error_term) == (1.0, 1.0, 1.0)
    assert lead.value == pytest.approx(1.0) and result.average == pytest.approx(0.1)
    assert overall_score(True, result).value == pytest.approx(0.95 * 0.1 + 0.05)


def test_imperfect_forecast_scores_between_zero_and_one() -> None:
    scorer = FastScorer()
    variables = aggregate_variables([scorer.score(f) for f in lead_fields(1, perfect=False)])
    assert all(v.scored for v in variables) and len(variables) == 9
    lead = score_era5({24: variables}).leads[0]
    assert 0.0 < lead.value < 1.0
    assert lead.skill_term is not None and 0.0 < lead.skill_term < 1.0
