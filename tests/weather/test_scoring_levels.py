"""Level aggregation of one variable at one lead (spec section 2), hand-computed."""

from __future__ import annotations

import math

import pytest

from gaia.tasks.weather.fields import FieldMetrics
from gaia.tasks.weather.scoring.config import LevelConfig
from gaia.tasks.weather.scoring.levels import VariableStatus, aggregate_levels, aggregate_variables
from gaia.tasks.weather.scoring.weights import latitude_weights, level_weights
from gaia.tasks.weather.variables import LEVELS


def metrics(
    level: int | None, mse: float = 4.0, acc: float = 1.0, skill: float = 0.5, variable: str = "t"
) -> FieldMetrics:
    return FieldMetrics(
        variable=variable,
        level=level,
        lead_hours=48,
        mse=mse,
        rmse=math.sqrt(mse),
        mse_raw=mse,
        mse_reference=10.0,
        skill=skill,
        acc=acc,
        bias=0.0,
        mae_weighted=1.0,
        bias_weighted=0.0,
        clone_mse=None,
        pattern_r=None,
        valid_points=6,
    )


def all_levels(
    mse: dict[int, float] | None = None,
    acc: dict[int, float] | None = None,
    skill: dict[int, float] | None = None,
) -> list[FieldMetrics]:
    """All 13 levels with MSE 4, ACC 1, SS 0.5 except where overridden."""
    mse, acc, skill = mse or {}, acc or {}, skill or {}
    return [
        metrics(level, mse.get(level, 4.0), acc.get(level, 1.0), skill.get(level, 0.5))
        for level in LEVELS
    ]


def test_level_weights_are_normalised_half_thicknesses() -> None:
    weights = level_weights(LEVELS)
    assert math.isclose(sum(weights.values()), 1.0)
    assert weights[850] == 112.5 / 950 and weights[50] == 25 / 950
    with pytest.raises(ValueError, match="level 475 hPa"):
        level_weights([475])


def test_latitude_weights_are_cosines() -> None:
    weights = latitude_weights([90.0, 60.0, 0.0, -60.0])  # type: ignore[arg-type]
    assert (
        weights[1] == pytest.approx(0.5) and weights[2] == 1.0 and weights[3] == pytest.approx(0.5)
    )
    assert 0.0 <= weights[0] < 1e-15


def test_rmse_acc_and_skill_are_weighted_over_levels() -> None:
    score = aggregate_levels(
        all_levels(acc={500: 0.0}, skill={1000: math.nan}, mse={50: 4.0 + 950 / 25 * 5})
    )
    assert score.status is VariableStatus.SCORED and score.reason is None
    # MSE_l = 4 everywhere except 50 hPa, whose weight 25/950 adds exactly 5: RMSE = sqrt(9)
    assert score.rmse == pytest.approx(3.0, rel=1e-12)
    # ACC 1 everywhere but 0 at 500 hPa (weight 100/950)
    assert score.acc == pytest.approx(850 / 950, rel=1e-12)
    # SS 0.5 everywhere, NaN at 1000 hPa (weight 37.5/950) counts as 0
    assert score.skill == pytest.approx(0.5 * (950 - 37.5) / 950, rel=1e-12)
    assert score.levels == LEVELS


def test_nan_acc_at_any_level_fails_the_variable() -> None:
    score = aggregate_levels(all_levels(acc={250: math.nan}))
    assert score.status is VariableStatus.FAILED
    assert score.reason == "ACC is NaN at levels [250] hPa"
    assert not score.scored


def test_missing_level_fails_the_variable() -> None:
    fields = [m for m in all_levels() if m.level != 925]
    score = aggregate_levels(fields)
    assert score.status is VariableStatus.FAILED and score.reason == "missing levels [925] hPa"


def test_custom_level_table() -> None:
    config = LevelConfig(half_thickness_hpa={500: 1.0, 850: 3.0})
    score = aggregate_levels(
        [metrics(500, mse=1.0, acc=0.2), metrics(850, mse=5.0, acc=0.6)], config
    )
    assert score.rmse == pytest.approx(math.sqrt(0.25 * 1 + 0.75 * 5))
    assert score.acc == pytest.approx(0.25 * 0.2 + 0.75 * 0.6)


def test_surface_variable_is_its_single_field() -> None:
    score = aggregate_levels([metrics(None, mse=2.25, acc=0.7, skill=-math.inf, variable="2t")])
    assert (score.rmse, score.acc, score.skill) == (1.5, 0.7, -math.inf)
    assert score.scored
    nan_skill = aggregate_levels([metrics(None, skill=math.nan, variable="2t")])
    assert nan_skill.skill == 0.0
    nan_acc = aggregate_levels([metrics(None, acc=math.nan, variable="2t")])
    assert nan_acc.reason == "ACC is NaN at surface"


def test_caller_errors_are_refused() -> None:
    with pytest.raises(ValueError, match="no field metrics"):
        aggregate_levels([])
    with pytest.raises(ValueError, match="duplicate levels"):
        aggregate_levels([metrics(500), metrics(500)])
    with pytest.raises(ValueError, match="cannot aggregate u"):
        aggregate_levels([metrics(500), metrics(850, variable="u")])
    with pytest.raises(ValueError, match="surface field mixed"):
        aggregate_levels([metrics(None), metrics(850)])


def test_aggregate_variables_groups_one_lead_by_variable() -> None:
    fields = [metrics(None, mse=1.0, variable="2t"), *all_levels(acc={100: math.nan})]
    scores = aggregate_variables(fields)
    assert [(s.variable, s.status) for s in scores] == [
        ("2t", VariableStatus.SCORED),
        ("t", VariableStatus.FAILED),
    ]
