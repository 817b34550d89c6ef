"""ReferenceScorer: the per-field metrics of spec section 2 written for clarity with xarray.

One metric at a time, each straight from its definition, in float64. It is the yardstick the
fast scorer is tested against, not the production path.

Arrays are xarray Variables with named dims (lat, lon). The fields arrive on one grid, so they
need no coordinates; Variables broadcast by dim name without the coordinate alignment that a
DataArray performs on every operation. That alignment, and `.weighted()`, were once nearly
all of this scorer's cost.

Missing values: non-finite values count as missing, and missing points are dropped pairwise
(spec section 2): wherever either field of a pair is missing, that point and its weight are
excluded. A `Field` holds its values with 0 at its missing points and a mask of the present
ones; a `Pair` of two fields weighs 0 every point where either is missing. So a weighted mean
is a sum over the whole grid, Σ w x / Σ w, to which the dropped points contribute nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import xarray as xr

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.config import MetricConfig
from gaia.tasks.weather.scoring.skill import correlation, skill_score
from gaia.tasks.weather.scoring.weights import latitude_weights

_DIMS = ("lat", "lon")


def weighted_sum(weights: xr.Variable, x: xr.Variable) -> float:
    """Σ_ij w_ij x_ij over the (lat, lon) grid, in one pass.

    The same as `xr.dot(weights, x)`, which costs several times this sum on a 1.5 deg field.
    """
    if weights.dims != _DIMS or x.dims != _DIMS:
        raise ValueError(f"weighted_sum needs two {_DIMS} arrays, got {weights.dims}, {x.dims}")
    return float(np.einsum("ij,ij->", weights.values, x.values))


@dataclass(frozen=True)
class Field:
    """One (lat, lon) field: its values (0 where missing) and where it is present."""

    values: xr.Variable
    present: xr.Variable


def as_field(array: np.ndarray) -> Field:
    """The array as a float64 Field; every non-finite value counts as missing."""
    data = np.array(array, dtype=np.float64)  # a copy: the caller's array is left as it was
    present = np.isfinite(data)
    data[~present] = 0.0
    return Field(xr.Variable(_DIMS, data), xr.Variable(_DIMS, present))


def difference(a: Field, b: Field) -> Field:
    """a - b, present where both are."""
    return Field(a.values - b.values, a.present & b.present)


def latitude_weight_field(lat: np.ndarray, like: Field) -> xr.Variable:
    """w_ij = cos(φ_i), broadcast over longitude once, onto the whole grid of `like`."""
    column = latitude_weights(lat)[:, np.newaxis]
    return xr.Variable(_DIMS, np.broadcast_to(column, like.values.shape))


@dataclass(frozen=True)
class Pair:
    """Two fields over the points where both are present.

    `weights` is w_ij where both are present and 0 elsewhere, so a sum over the grid weighted by
    it is a sum over the present points only. Where a point is dropped, `a` and `b` hold
    arbitrary finite values (they weigh nothing).
    """

    a: xr.Variable
    b: xr.Variable
    present: xr.Variable
    weights: xr.Variable

    @cached_property
    def total_weight(self) -> float:
        """Σ w over the present points."""
        return float(self.weights.values.sum())

    @cached_property
    def count(self) -> int:
        """How many points are present in both fields."""
        return int(np.count_nonzero(self.present.values))

    @cached_property
    def difference(self) -> xr.Variable:
        """a - b."""
        return self.a - self.b

    def weighted_mean(self, x: xr.Variable) -> float:
        """⟨x⟩_w = Σ w x / Σ w over the present points (NaN when there are none)."""
        if self.total_weight == 0.0:
            return math.nan
        return weighted_sum(self.weights, x) / self.total_weight

    def unweighted_mean(self, x: xr.Variable) -> float:
        """Plain mean of x over the present points (NaN when there are none)."""
        if self.count == 0:
            return math.nan
        return weighted_sum(self.present, x) / self.count  # every present point weighs 1

    def unweighted_std(self, x: xr.Variable) -> float:
        """Population standard deviation (ddof 0) of x over the present points."""
        return math.sqrt(self.unweighted_mean((x - self.unweighted_mean(x)) ** 2))


def pair(a: Field, b: Field, weights: xr.Variable) -> Pair:
    """Pair a with b: every point where either is missing is dropped, with its weight."""
    present = a.present & b.present
    return Pair(a.values, b.values, present, weights * present)


def mse(p: Pair) -> float:
    """MSE(a, b) = ⟨(a - b)^2⟩_w."""
    return p.weighted_mean(p.difference**2)


def unweighted_bias(p: Pair) -> float:
    """mean(a - b), unweighted: the bias that the bias correction removes."""
    return p.unweighted_mean(p.difference)


def bias_corrected_mse(p: Pair, bias: float) -> float:
    """MSE(a - bias, b), formed as ((a - b) - bias) so that no digits are lost to |a|."""
    return p.weighted_mean((p.difference - bias) ** 2)


def weighted_bias(p: Pair) -> float:
    """⟨a - b⟩_w (a diagnostic)."""
    return p.weighted_mean(p.difference)


def weighted_mae(p: Pair) -> float:
    """⟨|a - b|⟩_w (a diagnostic)."""
    return p.weighted_mean(abs(p.difference))


def pearson_r(p: Pair, config: MetricConfig) -> float:
    """Weighted Pearson correlation of a and b, centred on the weighted means, clipped to [-1, 1].

    NaN when either field is constant up to rounding (see `skill.correlation`).
    """
    a_anomaly = p.a - p.weighted_mean(p.a)
    b_anomaly = p.b - p.weighted_mean(p.b)
    return correlation(
        p.weighted_mean(a_anomaly * b_anomaly),
        p.weighted_mean(a_anomaly**2),
        p.weighted_mean(b_anomaly**2),
        p.weighted_mean(p.a**2),
        p.weighted_mean(p.b**2),
        config.constant_relative_spread,
    )


def acc(f: Field, o: Field, c: Field, weights: xr.Variable, config: MetricConfig) -> float:
    """ACC = r(f - c, o - c) on the raw forecast, over the points where f, o and c are present.

    NaN when there are none, or when the unweighted std of either anomaly over those points is
    below the floor.
    """
    anomalies = pair(difference(f, c), difference(o, c), weights)
    if anomalies.count == 0:
        return math.nan
    for anomaly in (anomalies.a, anomalies.b):
        if anomalies.unweighted_std(anomaly) < config.anomaly_std_floor:
            return math.nan
    return pearson_r(anomalies, config)


class ReferenceScorer:
    """Scores one field with xarray, one metric at a time (clear rather than fast)."""

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config or MetricConfig()

    def score(self, inputs: FieldInputs) -> FieldMetrics:
        f = as_field(inputs.forecast)
        o = as_field(inputs.truth)
        c = as_field(inputs.climatology)
        ref = as_field(inputs.reference) if inputs.reference is not None else c
        w = latitude_weight_field(inputs.lat, f)

        forecast_truth = pair(f, o, w)
        bias = unweighted_bias(forecast_truth)
        mse_bias_corrected = bias_corrected_mse(forecast_truth, bias)
        mse_reference = mse(pair(ref, o, w))
        forecast_reference = pair(f, ref, w) if inputs.reference is not None else None
        return FieldMetrics(
            variable=inputs.variable,
            level=inputs.level,
            lead_hours=inputs.lead_hours,
            mse=mse_bias_corrected,
            rmse=math.sqrt(mse_bias_corrected),
            mse_raw=mse(forecast_truth),
            mse_reference=mse_reference,
            skill=skill_score(mse_bias_corrected, mse_reference),
            acc=acc(f, o, c, w, self.config),
            bias=bias,
            mae_weighted=weighted_mae(forecast_truth),
            bias_weighted=weighted_bias(forecast_truth),
            clone_mse=mse(forecast_reference) if forecast_reference else None,
            pattern_r=pearson_r(forecast_reference, self.config) if forecast_reference else None,
            valid_points=forecast_truth.count,
        )
