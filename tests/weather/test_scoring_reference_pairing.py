"""The ReferenceScorer's building blocks: pairwise dropping, weighted sums, untouched inputs.

The metrics themselves are checked against hand-computed values in test_scoring_metrics.py and
against the fast scorer in test_scoring_fast_equivalence.py; these tests pin down the pieces the
reference is built from, on a 2 x 3 grid with latitudes 60 and 0 (row weights 0.5 and 1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.scoring.reference import (
    ReferenceScorer,
    as_field,
    latitude_weight_field,
    pair,
    weighted_sum,
)

LAT = np.array([60.0, 0.0])


def test_a_point_missing_in_either_field_is_dropped_with_its_weight() -> None:
    a = as_field(np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]]))
    b = as_field(np.array([[1.0, 2.0, 3.0], [np.inf, 5.0, 7.0]]))
    p = pair(a, b, latitude_weight_field(LAT, a))
    assert p.count == 4
    assert p.present.values.tolist() == [[True, False, True], [False, True, True]]
    assert np.allclose(p.weights.values, [[0.5, 0.0, 0.5], [0.0, 1.0, 1.0]])
    assert math.isclose(p.total_weight, 3.0)
    # a - b over the kept points: 0, 0 (weight 0.5 each) and 0, -1 (weight 1 each)
    assert math.isclose(p.weighted_mean(p.difference), -1.0 / 3.0)
    assert math.isclose(p.unweighted_mean(p.difference), -0.25)
    # population std of [0, 0, 0, -1]: sqrt(3/16)
    assert math.isclose(p.unweighted_std(p.difference), math.sqrt(3.0) / 4.0)


def test_a_pair_with_no_common_point_gives_nan() -> None:
    a = as_field(np.array([[1.0, np.nan, np.nan], [np.nan, np.nan, np.nan]]))
    b = as_field(np.array([[np.nan, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    p = pair(a, b, latitude_weight_field(LAT, a))
    assert p.count == 0 and p.total_weight == 0.0
    assert math.isnan(p.weighted_mean(p.difference))
    assert math.isnan(p.unweighted_mean(p.difference))


def test_weighted_sum_refuses_arrays_on_other_dims() -> None:
    weights = xr.Variable(("lat", "lon"), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\('lon', 'lat'\)"):
        weighted_sum(weights, xr.Variable(("lon", "lat"), np.ones((3, 2))))
    assert weighted_sum(weights, xr.Variable(("lat", "lon"), np.full((2, 3), 2.0))) == 12.0


def test_scoring_leaves_the_callers_arrays_as_they_were() -> None:
    forecast = np.array([[2.0, np.nan, 5.0], [4.0, 7.0, np.inf]])
    truth = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    climatology = np.full((2, 3), 3.5)
    reference = np.array([[1.5, 2.5, -np.inf], [4.0, 5.0, 6.5]])
    arrays = (forecast, truth, climatology, reference)
    before = [array.copy() for array in arrays]
    metrics = ReferenceScorer().score(
        FieldInputs("2t", None, 24, forecast, truth, climatology, reference, LAT)
    )
    assert metrics.valid_points == 4
    for original, array in zip(before, arrays, strict=True):
        assert array.dtype == original.dtype
        np.testing.assert_array_equal(array, original)  # NaN == NaN and inf == inf here
