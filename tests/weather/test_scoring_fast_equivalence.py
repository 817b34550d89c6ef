"""Property: FastScorer equals ReferenceScorer on every FieldMetrics component.

Tolerance: 1e-9 relative, plus a tiny absolute allowance near zero. A quantity that is near zero
because terms cancel (an unbiased mean error, a correlation close to 0, a skill score close to 0)
can only be computed to about machine epsilon times the size of the terms that cancelled; a
relative comparison of two such near-zero results is meaningless. So each component also gets
an absolute allowance of 1e-12 times its natural scale: the largest |difference field| (or its
square) for errors and MSEs, 1 for correlations, 1 + |skill| for the skill score (whose error is
that of the MSE ratio). That is a millionth of a millionth of the scale, far below anything a
score could notice, and still fails for any real discrepancy. The bias-corrected MSE also allows
for the bias itself being known only to a few ulps of its size (it is a mean of f - o): when the
bias is 1e7 times the spread, that rounding is larger than 1e-9 of the corrected error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.kernels import Engine, FastScorer
from gaia.tasks.weather.scoring.reference import ReferenceScorer

RELATIVE = 1e-9
ABSOLUTE_PER_SCALE = 1e-12


@st.composite
def fields(draw: st.DrawFn) -> FieldInputs:
    rows = draw(st.integers(1, 9))
    cols = draw(st.integers(1, 9))
    lat = draw(
        st.lists(st.floats(-90, 90, allow_nan=False), min_size=rows, max_size=rows).map(
            lambda values: np.array(sorted(values, reverse=True))
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (rows, cols)
    offset = draw(st.sampled_from([0.0, -20.0, 1.0, 280.0, 5e4, 1e5]))
    spread = draw(st.sampled_from([1e-3, 1.0, 50.0, 3e3]))
    error = draw(st.sampled_from([0.0, 1e-4, 0.1, 1.0, 100.0]))
    bias = draw(st.sampled_from([0.0, 0.5, 30.0, 1e3]))
    truth = offset + spread * rng.standard_normal(shape)
    forecast = truth + bias + error * rng.standard_normal(shape)
    if draw(st.booleans()):  # a large error on the least-weighted row (weighted != unweighted)
        forecast[np.argmax(np.abs(lat))] += draw(st.sampled_from([1.0, 1e3]))
    climatology = draw(
        st.sampled_from(["noisy truth", "forecast", "truth", "constant", "independent"])
    )
    clim = {
        "noisy truth": truth + 0.5 * spread * rng.standard_normal(shape),
        "forecast": forecast.copy(),
        "truth": truth.copy(),
        "constant": np.full(shape, offset),
        "independent": offset + spread * rng.standard_normal(shape),
    }[climatology]
    reference = None
    if draw(st.booleans()):
        ref_error = draw(st.sampled_from([0.0, 0.01, 1.0, 100.0]))
        reference = truth + ref_error * rng.standard_normal(shape)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    arrays = [forecast, truth, clim] + ([reference] if reference is not None else [])
    missing = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
    prepared = []
    for array in arrays:
        array = array.astype(dtype)
        if missing and draw(st.booleans()):
            array[rng.random(shape) < missing] = np.nan
        prepared.append(array)
    return FieldInputs(
        "z",
        500,
        24,
        prepared[0],
        prepared[1],
        prepared[2],
        prepared[3] if reference is not None else None,
        lat,
    )


def largest(*arrays: np.ndarray | None) -> float:
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays if a is not None]
    values = [float(a.max()) for a in finite if a.size]
    return max(values, default=0.0)


def scales(field: FieldInputs, reference: FieldMetrics) -> dict[str, float]:
    f = field.forecast.astype(np.float64)
    o = field.truth.astype(np.float64)
    c = field.climatology.astype(np.float64)
    ref = field.reference.astype(np.float64) if field.reference is not None else c
    error = largest(f - o)
    corrected = largest(f - o - reference.bias) if math.isfinite(reference.bias) else error
    return {
        "mse": corrected**2,
        "rmse": corrected,
        "mse_raw": error**2,
        "mse_reference": largest(ref - o) ** 2,
        "bias": error,
        "mae_weighted": error,
        "bias_weighted": error,
        "clone_mse": largest(f - ref) ** 2,
        "acc": 1.0,
        "pattern_r": 1.0,
        "skill": 1.0 + abs(reference.skill) if math.isfinite(reference.skill) else 1.0,
    }


def bias_rounding(field: FieldInputs) -> float:
    """How precisely the unweighted bias, a mean of f - o, is known: a few ulps of max |f - o|."""
    return (
        4
        * np.finfo(np.float64).eps
        * largest(field.forecast.astype(np.float64) - field.truth.astype(np.float64))
    )


def agree(fast: float | None, reference: float | None, abs_tol: float) -> bool:
    if fast is None or reference is None:
        return fast is None and reference is None
    if math.isnan(reference) or math.isinf(reference):
        return (math.isnan(fast) and math.isnan(reference)) or fast == reference
    return math.isclose(fast, reference, rel_tol=RELATIVE, abs_tol=abs_tol)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=fields(), block_rows=st.sampled_from([None, 1, 2, 4, 24]))
def test_fast_scorer_matches_reference_scorer(field: FieldInputs, block_rows: int | None) -> None:
    """block_rows None: the compiled engine; a number: the numpy engine with that block."""
    expected = ReferenceScorer().score(field)
    if block_rows is None:
        actual = FastScorer(engine="compiled").score(field)
    else:
        actual = FastScorer(engine="numpy", block_rows=block_rows).score(field)
    assert actual.valid_points == expected.valid_points
    allowances = {name: ABSOLUTE_PER_SCALE * s for name, s in scales(field, expected).items()}
    rounding = bias_rounding(field)
    corrected = math.sqrt(allowances["mse"] / ABSOLUTE_PER_SCALE)
    allowances["mse"] += 2 * corrected * rounding + rounding**2
    allowances["rmse"] += rounding
    for name, abs_tol in allowances.items():
        fast, slow = getattr(actual, name), getattr(expected, name)
        assert agree(fast, slow, abs_tol), f"{name}: fast {fast!r} != reference {slow!r}"


@pytest.mark.parametrize("engine", ["compiled", "numpy"])
def test_large_realistic_field_takes_one_pass_and_matches(engine: Engine) -> None:
    rng = np.random.default_rng(7)
    rows, cols = 181, 360
    lat = np.linspace(90, -90, rows)
    phi = np.deg2rad(lat)[:, None]
    lam = np.deg2rad(np.arange(cols))[None, :]
    truth = (
        55000 + 3000 * np.cos(2 * phi) * np.cos(3 * lam) + 30 * rng.standard_normal((rows, cols))
    )
    forecast = truth + 15 + 40 * np.sin(phi) + 20 * rng.standard_normal((rows, cols))
    climatology = truth + 500 * np.sin(lam + phi)
    reference = truth + 25 * rng.standard_normal((rows, cols))
    field = FieldInputs(
        "z",
        500,
        12,
        forecast.astype(np.float32),
        truth.astype(np.float32),
        climatology.astype(np.float32),
        reference.astype(np.float32),
        lat,
    )
    fast = FastScorer(engine=engine)
    assert fast.one_pass(field) is not None
    expected = ReferenceScorer().score(field)
    actual = fast.score(field)
    for name, value in vars(expected).items():
        if isinstance(value, float):
            assert math.isclose(getattr(actual, name), value, rel_tol=1e-12), name
