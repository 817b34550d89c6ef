"""Per-field metrics (spec section 2) against hand-computed values, for both scorers.

The grid is 2 x 3 with latitudes 60 and 0, so the row weights are cos 60 = 0.5 and cos 0 = 1 and
the weight total is 3 * 0.5 + 3 * 1 = 4.5. Expected values are worked out in the comments.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from gaia.tasks.weather.fields import FieldInputs, FieldScorer
from gaia.tasks.weather.scoring.config import MetricConfig
from gaia.tasks.weather.scoring.kernels import Engine, FastScorer, compiled_available
from gaia.tasks.weather.scoring.reference import ReferenceScorer
from gaia.tasks.weather.scoring.skill import skill_score

LAT = np.array([60.0, 0.0])
TRUTH = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
FORECAST = np.array([[2.0, 2.0, 5.0], [4.0, 7.0, 5.0]])  # d = f - o = [[1, 0, 2], [0, 2, -1]]
CLIMATOLOGY = np.full((2, 3), 3.5)

SCORERS = [
    pytest.param(ReferenceScorer(), id="reference"),
    pytest.param(FastScorer(engine="compiled"), id="fast-compiled"),
    pytest.param(FastScorer(engine="numpy"), id="fast-numpy"),
    pytest.param(FastScorer(engine="numpy", block_rows=1), id="fast-numpy-row-blocks"),
]


def inputs(
    forecast: np.ndarray = FORECAST,
    truth: np.ndarray = TRUTH,
    climatology: np.ndarray = CLIMATOLOGY,
    reference: np.ndarray | None = None,
    lat: np.ndarray = LAT,
) -> FieldInputs:
    return FieldInputs("2t", None, 24, forecast, truth, climatology, reference, lat)


def close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-15)


def weighted_r(a: list[list[float]], b: list[list[float]], w: list[float]) -> float:
    """Weighted Pearson r in exact rational arithmetic, straight from its definition."""
    weights = [Fraction(w[i]) for i in range(len(a)) for _ in a[i]]
    xs = [Fraction(x) for row in a for x in row]
    ys = [Fraction(y) for row in b for y in row]
    total = sum(weights)
    mx = sum(wi * x for wi, x in zip(weights, xs, strict=True)) / total
    my = sum(wi * y for wi, y in zip(weights, ys, strict=True)) / total
    cov = sum(wi * (x - mx) * (y - my) for wi, x, y in zip(weights, xs, ys, strict=True))
    vx = sum(wi * (x - mx) ** 2 for wi, x in zip(weights, xs, strict=True))
    vy = sum(wi * (y - my) ** 2 for wi, y in zip(weights, ys, strict=True))
    return float(cov) / math.sqrt(float(vx) * float(vy))


@pytest.mark.parametrize("scorer", SCORERS)
def test_hand_computed_field(scorer: FieldScorer) -> None:
    m = scorer.score(inputs())
    # unweighted bias b = (1 + 0 + 2 + 0 + 2 - 1) / 6 = 2/3
    assert close(m.bias, 2 / 3)
    # MSE(f, o) = (0.5 * (1 + 0 + 4) + 1 * (0 + 4 + 1)) / 4.5 = 7.5 / 4.5 = 5/3
    assert close(m.mse_raw, 5 / 3)
    # weighted bias = (0.5 * 3 + 1 * 1) / 4.5 = 5/9; weighted MAE = (0.5 * 3 + 1 * 3) / 4.5 = 1
    assert close(m.bias_weighted, 5 / 9)
    assert close(m.mae_weighted, 1.0)
    # d - b = [[1/3, -2/3, 4/3], [-2/3, 4/3, -5/3]]: (0.5 * 21/9 + 1 * 45/9) / 4.5 = 37/27
    assert close(m.mse, 37 / 27)
    assert close(m.rmse, math.sqrt(37 / 27))
    # o - c = [[-2.5, -1.5, -0.5], [0.5, 1.5, 2.5]]: (0.5 * 8.75 + 8.75) / 4.5 = 35/12
    assert close(m.mse_reference, 35 / 12)
    assert close(m.skill, 1 - (37 / 27) / (35 / 12))
    expected_acc = weighted_r((FORECAST - 3.5).tolist(), (TRUTH - 3.5).tolist(), [0.5, 1.0])
    assert close(m.acc, expected_acc)
    assert m.valid_points == 6
    assert m.clone_mse is None and m.pattern_r is None


@pytest.mark.parametrize("scorer", SCORERS)
def test_reference_forecast_gives_clone_distance_and_pattern_r(scorer: FieldScorer) -> None:
    reference = TRUTH + np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    m = scorer.score(inputs(reference=reference))
    # MSE(ref, o) = 0.5 * 1 / 4.5 = 1/9 is now the skill reference
    assert close(m.mse_reference, 1 / 9)
    assert close(m.skill, 1 - (37 / 27) / (1 / 9))
    # f - ref = [[0, 0, 2], [0, 2, -1]]: (0.5 * 4 + 1 * 5) / 4.5 = 14/9
    assert close(m.clone_mse or math.nan, 14 / 9)
    expected_r = weighted_r(FORECAST.tolist(), reference.tolist(), [0.5, 1.0])
    assert close(m.pattern_r or math.nan, expected_r)


@pytest.mark.parametrize("scorer", SCORERS)
def test_perfect_forecast(scorer: FieldScorer) -> None:
    m = scorer.score(inputs(forecast=TRUTH.copy(), reference=TRUTH.copy()))
    assert (m.mse, m.mse_raw, m.mae_weighted, m.bias, m.clone_mse) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert close(m.acc, 1.0) and close(m.pattern_r or math.nan, 1.0)
    assert m.skill == 1.0  # MSE(ref, o) = 0 and MSE = 0


@pytest.mark.parametrize("scorer", SCORERS)
def test_perfect_forecast_against_climatology(scorer: FieldScorer) -> None:
    m = scorer.score(inputs(forecast=TRUTH.copy()))
    assert m.mse == 0.0 and m.skill == 1.0 and close(m.acc, 1.0)


@pytest.mark.parametrize("scorer", SCORERS)
def test_climatology_as_forecast_has_zero_skill_and_nan_acc(scorer: FieldScorer) -> None:
    # c - o sums to exactly zero, so the bias correction is zero and MSE(f_bc, o) = MSE(c, o)
    climatology = TRUTH + np.array([[1.0, -1.0, 2.0], [-2.0, 0.5, -0.5]])
    m = scorer.score(inputs(forecast=climatology.copy(), climatology=climatology))
    assert m.bias == 0.0
    assert m.skill == 0.0
    assert math.isnan(m.acc)  # f - c is zero everywhere: std below 1e-12


@pytest.mark.parametrize("scorer", SCORERS)
def test_bias_only_forecast_is_corrected_to_zero_error(scorer: FieldScorer) -> None:
    m = scorer.score(inputs(forecast=TRUTH + 7.0))
    assert m.bias == 7.0 and close(m.mse_raw, 49.0)
    assert m.mse == 0.0 and m.skill == 1.0


@pytest.mark.parametrize("scorer", SCORERS)
def test_skill_when_reference_is_perfect(scorer: FieldScorer) -> None:
    perfect_reference = scorer.score(inputs(reference=TRUTH.copy()))
    assert perfect_reference.mse_reference == 0.0
    assert perfect_reference.skill == -math.inf
    both_perfect = scorer.score(inputs(forecast=TRUTH + 1.0, reference=TRUTH.copy()))
    assert both_perfect.mse == 0.0 and both_perfect.skill == 1.0


def test_skill_score_edge_rules() -> None:
    assert skill_score(1.0, 4.0) == 0.75
    assert skill_score(0.0, 0.0) == 1.0
    assert skill_score(0.5, 0.0) == -math.inf
    assert math.isnan(skill_score(math.nan, 1.0))
    assert math.isnan(skill_score(1.0, math.inf))


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("missing", [np.nan, np.inf], ids=["nan", "inf"])
def test_missing_points_are_dropped_pairwise(scorer: FieldScorer, missing: float) -> None:
    forecast = FORECAST.copy()
    forecast[0, 1] = missing  # a point where d was 0
    m = scorer.score(inputs(forecast=forecast))
    # remaining d: row 0 (w 0.5): 1, 2; row 1 (w 1): 0, 2, -1; weight total 1 + 3 = 4
    assert m.valid_points == 5
    assert close(m.bias, 4 / 5)
    assert close(m.mse_raw, (0.5 * 5 + 5) / 4)
    assert close(m.bias_weighted, (0.5 * 3 + 1) / 4)
    assert close(m.mae_weighted, (0.5 * 3 + 3) / 4)
    # the climatology/truth pair is complete, so MSE(c, o) still uses all six points
    assert close(m.mse_reference, 35 / 12)


@pytest.mark.parametrize("scorer", SCORERS)
def test_missing_climatology_only_affects_acc_and_reference(scorer: FieldScorer) -> None:
    climatology = CLIMATOLOGY.copy()
    climatology[1, 2] = np.nan
    m = scorer.score(inputs(climatology=climatology))
    assert close(m.mse, 37 / 27) and m.valid_points == 6
    # o - c without (1, 2): (0.5 * 8.75 + 2.5) / 3.5
    assert close(m.mse_reference, (0.5 * 8.75 + 2.5) / 3.5)
    fa = (FORECAST - 3.5).tolist()
    oa = (TRUTH - 3.5).tolist()
    del fa[1][2], oa[1][2]
    assert close(m.acc, weighted_r(fa, oa, [0.5, 1.0]))


@pytest.mark.parametrize("scorer", SCORERS)
def test_all_missing_gives_nan_not_a_number(scorer: FieldScorer) -> None:
    m = scorer.score(inputs(forecast=np.full((2, 3), np.nan)))
    assert m.valid_points == 0
    for value in (m.mse, m.mse_raw, m.bias, m.mae_weighted, m.skill, m.acc):
        assert math.isnan(value)


@pytest.mark.parametrize("scorer", SCORERS)
def test_acc_nan_when_truth_anomaly_is_flat(scorer: FieldScorer) -> None:
    flat = scorer.score(inputs(climatology=TRUTH + 2.0))  # o - c = -2 everywhere: std 0
    assert math.isnan(flat.acc)


def test_anomaly_std_floor_is_configurable() -> None:
    tiny = TRUTH * 1e-9  # anomalies with std around 1e-9
    field = inputs(forecast=tiny * 1.5, truth=tiny, climatology=np.zeros((2, 3)))
    for scorer in (ReferenceScorer, FastScorer):
        assert not math.isnan(scorer().score(field).acc)
        assert math.isnan(scorer(MetricConfig(anomaly_std_floor=1e-6)).score(field).acc)


@pytest.mark.parametrize("engine", ["compiled", "numpy"])
def test_fast_scorer_takes_one_pass_on_complete_fields_only(engine: Engine) -> None:
    fast = FastScorer(engine=engine)
    assert fast.one_pass(inputs()) is not None
    with_gap = FORECAST.copy()
    with_gap[1, 1] = np.nan
    assert fast.one_pass(inputs(forecast=with_gap)) is None
    # a large bias over a tiny spread would lose digits in raw moments: the exact path is used
    rng = np.random.default_rng(0)
    biased = TRUTH + 1e4 + 1e-3 * rng.standard_normal(TRUTH.shape)
    assert fast.one_pass(inputs(forecast=biased)) is None
    exact, reference = (
        fast.score(inputs(forecast=biased)),
        ReferenceScorer().score(inputs(forecast=biased)),
    )
    assert math.isclose(exact.mse, reference.mse, rel_tol=1e-9)


def test_block_size_and_engine_do_not_change_results() -> None:
    rng = np.random.default_rng(1)
    shape = (13, 7)
    truth = 280 + 10 * rng.standard_normal(shape)
    field = FieldInputs(
        "t",
        850,
        48,
        truth + rng.standard_normal(shape),
        truth,
        truth + 5 * rng.standard_normal(shape),
        truth + 2 * rng.standard_normal(shape),
        np.linspace(90, -90, 13),
    )
    results = [FastScorer(engine="numpy", block_rows=b).score(field) for b in (1, 2, 5, 13, 100)]
    results.append(FastScorer(engine="compiled").score(field))
    for other in results[1:]:
        for name, value in vars(results[0]).items():
            if isinstance(value, float):
                assert math.isclose(value, getattr(other, name), rel_tol=1e-12), name


def test_fast_scorer_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="block_rows"):
        FastScorer(block_rows=0)
    with pytest.raises(ValueError, match="condition_limit"):
        FastScorer(condition_limit=0.5)
    with pytest.raises(ValueError, match="engine"):
        FastScorer(engine="gpu")  # type: ignore[arg-type]


def test_auto_engine_is_the_compiled_one_where_numba_imports() -> None:
    assert compiled_available()
    assert FastScorer().resolved_engine == "compiled"


def test_field_inputs_name_the_bad_array() -> None:
    with pytest.raises(ValueError, match="climatology shape"):
        inputs(climatology=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="lat must be 1-D of length 2"):
        inputs(lat=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="within \\[-90, 90\\]"):
        ReferenceScorer().score(inputs(lat=np.array([91.0, 0.0])))
