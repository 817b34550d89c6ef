"""Day-1 stage: unit conversion, sanity checks, clone penalty, Day1 formula and strict clamp."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.config import Day1Config
from gaia.tasks.weather.scoring.day1 import (
    Day1Result,
    Day1Status,
    Day1VariableScore,
    Day1VariableStatus,
    clone_penalty,
    combine,
    convert_units,
    detect_unit_conversion,
    sanity_failure,
    score_day1,
    score_variable,
)
from gaia.tasks.weather.scoring.kernels import FastScorer
from gaia.tasks.weather.variables import DAY1_VARIABLES, G

CONFIG = Day1Config()
SCORED, SKIPPED = Day1VariableStatus.SCORED, Day1VariableStatus.SKIPPED


def test_unit_rules_from_field_means() -> None:
    assert detect_unit_conversion("z", 5600.0, 55000.0, CONFIG).scale == G  # type: ignore[union-attr]
    assert detect_unit_conversion("2t", 15.0, 288.0, CONFIG).offset == 273.15  # type: ignore[union-attr]
    assert detect_unit_conversion("t", 99.0, 201.0, CONFIG) is not None
    assert detect_unit_conversion("msl", 1013.0, 101300.0, CONFIG).scale == 100.0  # type: ignore[union-attr]
    assert detect_unit_conversion("z", 55000.0, 55000.0, CONFIG) is None
    assert detect_unit_conversion("2t", 15.0, 150.0, CONFIG) is None  # truth not above 200
    assert detect_unit_conversion("10u", -3.0, 5.0, CONFIG) is None


def test_convert_units_changes_the_forecast_only() -> None:
    truth = np.full((2, 2), 55000.0)
    heights = np.array([[5600.0, 5500.0], [np.nan, 5700.0]])
    field = FieldInputs("z", 500, 12, heights, truth, truth, truth, np.array([10.0, -10.0]))
    converted, rule = convert_units(field)
    assert rule is not None and "geopotential" in rule.description
    assert converted.forecast[0, 0] == pytest.approx(5600.0 * G)
    assert np.isnan(converted.forecast[1, 0]) and converted.truth is truth
    unchanged, none = convert_units(converted)
    assert none is None and unchanged is converted


def test_sanity_checks() -> None:
    field = np.array([[250.0, 300.0], [np.nan, 280.0]])
    assert sanity_failure("2t", None, field, 0.9) is None
    assert "outside bounds" in (sanity_failure("2t", None, field + 45.0, 0.9) or "")
    assert "outside bounds" in (sanity_failure("t", 850, field - 40.0, 0.9) or "")
    assert sanity_failure("t", 500, field - 40.0, 0.9) is None  # no bounds at 500 hPa
    assert "negative" in (sanity_failure("q", 700, np.array([[1e-3, -1e-6]]), 0.9) or "")
    assert "pattern correlation 0.29" in (sanity_failure("2t", None, field, 0.29) or "")
    assert sanity_failure("2t", None, field, 0.3) is None
    assert "pattern correlation nan" in (sanity_failure("2t", None, field, math.nan) or "")
    assert "no finite" in (sanity_failure("2t", None, np.full((1, 2), np.nan), 0.9) or "")


def test_clone_penalty() -> None:
    assert clone_penalty(0.001, 0.0025, 1.0) == pytest.approx(0.6)
    assert clone_penalty(0.0, 100.0, 1.0) == 1.0
    assert clone_penalty(100.0, 100.0, 1.0) == 0.0
    assert clone_penalty(50.0, 100.0, 0.5) == 0.25
    assert clone_penalty(math.nan, 100.0, 1.0) == 0.0


def variable_score(
    skill: float, acc: float, status: Day1VariableStatus = SCORED, distance: float = 1e6
) -> Day1VariableScore:
    threshold = 400.0
    penalty = clone_penalty(distance, threshold, 1.0)
    return Day1VariableScore("msl", None, 12, status, skill, acc, distance, threshold, penalty)


def test_day1_formula_pools_scored_variables() -> None:
    result = combine(
        [
            variable_score(0.5, 0.8),
            variable_score(-0.2, 0.4),
            variable_score(0.9, 0.9, status=SKIPPED),  # skipped: not counted at all
        ]
    )
    # 0.6 * mean(0.5, 0) + 0.4 * mean(0.9, 0.7) = 0.15 + 0.32
    assert result.status is Day1Status.SCORED
    assert result.score == pytest.approx(0.47) and result.passed and not result.clamped


def test_no_scored_variable_is_a_zero_score() -> None:
    result = combine([variable_score(0.9, 0.9, status=SKIPPED)])
    assert result.score == 0.0 and not result.passed and result.status is Day1Status.SCORED


def test_strict_clamp() -> None:
    penalised = combine([variable_score(0.9, 0.9), variable_score(0.9, 0.9, distance=300.0)])
    assert penalised.clamped and penalised.score == 0.05 and not penalised.passed
    no_gamma = Day1Config(clone_gamma=0.0)
    close = Day1VariableScore("msl", None, 12, SCORED, 0.9, 0.9, 150.0, 400.0, 0.0)
    assert combine([close], no_gamma).score == 0.05  # D < 0.5 * Delta even without a penalty
    skipped_clone = variable_score(0.9, 0.9, status=SKIPPED, distance=0.0)
    assert combine([variable_score(0.9, 0.9), skipped_clone]).score == 0.05


def test_pass_threshold() -> None:
    assert combine([variable_score(0.0, -0.5)]).score == pytest.approx(0.1)
    assert combine([variable_score(0.0, -0.5)]).passed
    assert not combine([variable_score(0.0, -0.51)]).passed


def metrics(**values: float) -> FieldMetrics:
    base = dict(
        mse=1.0,
        rmse=1.0,
        mse_raw=1.0,
        mse_reference=2.0,
        skill=0.5,
        acc=0.6,
        bias=0.0,
        mae_weighted=1.0,
        bias_weighted=0.0,
        clone_mse=1000.0,
        pattern_r=0.9,
    )
    base.update(values)
    return FieldMetrics("msl", None, 12, valid_points=4, **base)


def test_score_variable_applies_penalty_and_skips_nan() -> None:
    forecast = np.full((2, 2), 101000.0)
    penalised = score_variable(metrics(clone_mse=100.0), forecast)
    assert penalised.penalty == pytest.approx(0.75) and penalised.skill == pytest.approx(-0.25)
    assert penalised.scored
    nan_acc = score_variable(metrics(acc=math.nan), forecast)
    assert nan_acc.status is SKIPPED and nan_acc.reason == "msl: ACC is NaN"
    out_of_bounds = score_variable(metrics(), forecast * 2)
    assert out_of_bounds.status is SKIPPED and "outside bounds" in (out_of_bounds.reason or "")
    with pytest.raises(ValueError, match="need a reference"):
        score_variable(metrics(clone_mse=None), forecast)  # type: ignore[arg-type]


def day1_fields(seed: int = 0, z_in_metres: bool = False) -> list[FieldInputs]:
    """Smooth realistic day-1 fields on a 1.5 deg grid: truth, forecast, reference, climatology."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(90, -90, 121)
    phi, lam = np.deg2rad(lat)[:, None], np.deg2rad(np.arange(240) * 1.5)[None, :]
    pattern = np.cos(2 * phi) * np.cos(3 * lam) + 0.5 * np.sin(phi + 2 * lam)
    base = {
        "2t": (280.0, 15.0, 0.5),
        "msl": (101000.0, 800.0, 120.0),
        "10u": (0.0, 5.0, 1.0),
        "10v": (0.0, 5.0, 1.0),
        "z": (55000.0, 2000.0, 30.0),
    }
    fields = []
    for variable, level in DAY1_VARIABLES:
        mean, amplitude, noise = base[variable]
        truth = mean + amplitude * pattern
        forecast = truth + noise * rng.standard_normal(truth.shape)
        reference = truth + noise * rng.standard_normal(truth.shape)
        climatology = mean + 0.7 * amplitude * np.roll(pattern, 5, axis=1)
        if variable == "z" and z_in_metres:
            forecast = forecast / G
        fields.append(
            FieldInputs(
                variable,
                level,
                12,
                forecast.astype(np.float32),
                truth,
                climatology,
                reference.astype(np.float32),
                lat,
            )
        )
    return fields


def test_score_day1_end_to_end() -> None:
    result = score_day1(day1_fields(), FastScorer())
    assert result.status is Day1Status.SCORED
    assert [v.status for v in result.variables] == [SCORED] * 5
    assert 0.1 <= (result.score or 0.0) <= 1.0 and result.passed and not result.clamped


def test_geopotential_height_is_converted_before_scoring() -> None:
    in_metres = score_day1(day1_fields(z_in_metres=True), FastScorer())
    z500 = in_metres.variables[-1]
    assert z500.conversion == "geopotential height (m) -> m2 s-2" and z500.scored
    proper = score_day1(day1_fields(), FastScorer())
    assert in_metres.score == pytest.approx(proper.score, rel=1e-6)


def test_a_clone_of_the_reference_is_clamped() -> None:
    fields = day1_fields()
    reference = fields[0].reference
    assert reference is not None
    clone = FieldInputs(
        "2t",
        None,
        12,
        reference.copy(),
        fields[0].truth,
        fields[0].climatology,
        reference,
        fields[0].lat,
    )
    result = score_day1([clone, *fields[1:]], FastScorer())
    assert result.clamped and result.score == pytest.approx(0.05) and not result.passed
    assert result.variables[0].penalty == 1.0


def test_failures_are_recorded_not_scored() -> None:
    fields = day1_fields()
    no_reference = FieldInputs(
        "2t",
        None,
        12,
        fields[0].forecast,
        fields[0].truth,
        fields[0].climatology,
        None,
        fields[0].lat,
    )
    error = score_day1([no_reference], FastScorer())
    assert error.status is Day1Status.ERROR and error.score is None and not error.passed
    assert error.reason == "ValueError: day-1 field 2t has no reference forecast"
    failed = Day1Result.verification_failed("claimed hash changed")
    assert failed.score == 0.0 and failed.status is Day1Status.VERIFICATION_FAILED
