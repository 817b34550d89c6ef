"""ReferenceScorer: the per-field metrics of spec section 2 written for clarity with xarray.

One metric at a time, each straight from its definition, in float64. Non-finite values count as
missing, and missing points are dropped pairwise (with their weights) for every metric. It is the
yardstick the fast scorer is tested against, not the production path.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.config import MetricConfig
from gaia.tasks.weather.scoring.skill import correlation, skill_score
from gaia.tasks.weather.scoring.weights import latitude_weights

_DIMS = ("lat", "lon")


def _as_field(values: np.ndarray) -> xr.DataArray:
    data = np.asarray(values, dtype=np.float64)
    return xr.DataArray(np.where(np.isfinite(data), data, np.nan), dims=_DIMS)


def _pairwise(a: xr.DataArray, b: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """a and b with NaN wherever either is NaN."""
    both = a.notnull() & b.notnull()
    return a.where(both), b.where(both)


def weighted_mean(x: xr.DataArray, weights: xr.DataArray) -> float:
    """Sum w x / sum w over the points where x is not NaN (NaN when there are none)."""
    return float(x.weighted(weights).mean(_DIMS, skipna=True))


def mse(a: xr.DataArray, b: xr.DataArray, weights: xr.DataArray) -> float:
    """Latitude-weighted mean of (a - b)^2."""
    return weighted_mean((a - b) ** 2, weights)


def pearson_r(
    a: xr.DataArray, b: xr.DataArray, weights: xr.DataArray, config: MetricConfig
) -> float:
    """Weighted Pearson correlation, centred on the weighted means, clipped to [-1, 1]."""
    a, b = _pairwise(a, b)
    a_anomaly = a - weighted_mean(a, weights)
    b_anomaly = b - weighted_mean(b, weights)
    return correlation(
        weighted_mean(a_anomaly * b_anomaly, weights),
        weighted_mean(a_anomaly**2, weights),
        weighted_mean(b_anomaly**2, weights),
        weighted_mean(a**2, weights),
        weighted_mean(b**2, weights),
        config.constant_relative_spread,
    )


def unweighted_mean(x: xr.DataArray) -> float:
    """Plain NaN-skipping mean (NaN when every point is missing)."""
    return float(x.mean(skipna=True)) if bool(x.notnull().any()) else math.nan


class ReferenceScorer:
    """Scores one field with xarray, one metric at a time (slow, clear)."""

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config or MetricConfig()

    def score(self, inputs: FieldInputs) -> FieldMetrics:
        f = _as_field(inputs.forecast)
        o = _as_field(inputs.truth)
        c = _as_field(inputs.climatology)
        ref = _as_field(inputs.reference) if inputs.reference is not None else c
        w = xr.DataArray(latitude_weights(inputs.lat), dims=("lat",)).broadcast_like(f)

        error = f - o
        bias = unweighted_mean(error)
        # (f - bias) - o, formed as (f - o) - bias so that no digits are lost to |f|
        mse_bias_corrected = weighted_mean((error - bias) ** 2, w)
        mse_reference = mse(ref, o, w)
        has_reference = inputs.reference is not None
        return FieldMetrics(
            variable=inputs.variable,
            level=inputs.level,
            lead_hours=inputs.lead_hours,
            mse=mse_bias_corrected,
            rmse=math.sqrt(mse_bias_corrected),
            mse_raw=mse(f, o, w),
            mse_reference=mse_reference,
            skill=skill_score(mse_bias_corrected, mse_reference),
            acc=self.acc(f, o, c, w),
            bias=bias,
            mae_weighted=weighted_mean(abs(error), w),
            bias_weighted=weighted_mean(error, w),
            clone_mse=mse(f, ref, w) if has_reference else None,
            pattern_r=pearson_r(f, ref, w, self.config) if has_reference else None,
            valid_points=int(error.notnull().sum()),
        )

    def acc(
        self, f: xr.DataArray, o: xr.DataArray, c: xr.DataArray, weights: xr.DataArray
    ) -> float:
        """r(f - c, o - c); NaN when the unweighted std of either anomaly is below the floor.

        The std is taken over the points where forecast, truth and climatology are all present.
        """
        forecast_anomaly, truth_anomaly = _pairwise(f - c, o - c)
        if not bool(forecast_anomaly.notnull().any()):
            return math.nan
        floor = self.config.anomaly_std_floor
        for anomaly in (forecast_anomaly, truth_anomaly):
            if float(anomaly.std(skipna=True)) < floor:
                return math.nan
        return pearson_r(forecast_anomaly, truth_anomaly, weights, self.config)
