"""The exact two-pass numpy path of the fast scorer.

Used when a field has missing (non-finite) values or when the one-pass sums would lose precision
to cancellation. Every mean is taken first and every second moment is centred on it, with missing
points dropped pairwise (and their weights) exactly as in spec section 2.
"""

from __future__ import annotations

import math

import numpy as np

from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.scoring.config import MetricConfig
from gaia.tasks.weather.scoring.skill import correlation
from gaia.tasks.weather.scoring.summary import FieldSummary
from gaia.tasks.weather.scoring.weights import latitude_weights


def _clean(values: np.ndarray) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(data), data, np.nan)


def _weighted_mean(x: np.ndarray, weights: np.ndarray) -> float:
    """Sum w x / sum w over the finite points of x (NaN when there are none)."""
    valid = np.isfinite(x)
    total_weight = float(np.sum(np.where(valid, weights, 0.0)))
    if total_weight == 0.0:
        return math.nan
    return float(np.sum(np.where(valid, weights * x, 0.0))) / total_weight


def _pairwise(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.isfinite(a) & np.isfinite(b)
    return np.where(both, a, np.nan), np.where(both, b, np.nan)


def _pearson(a: np.ndarray, b: np.ndarray, weights: np.ndarray, config: MetricConfig) -> float:
    a, b = _pairwise(a, b)
    a_anomaly = a - _weighted_mean(a, weights)
    b_anomaly = b - _weighted_mean(b, weights)
    return correlation(
        _weighted_mean(a_anomaly * b_anomaly, weights),
        _weighted_mean(a_anomaly * a_anomaly, weights),
        _weighted_mean(b_anomaly * b_anomaly, weights),
        _weighted_mean(a * a, weights),
        _weighted_mean(b * b, weights),
        config.constant_relative_spread,
    )


def _population_std(x: np.ndarray) -> float:
    values = x[np.isfinite(x)]
    return float(np.std(values)) if values.size else math.nan


def exact_summary(inputs: FieldInputs, config: MetricConfig) -> FieldSummary:
    """All per-field numbers by centred two-pass sums over whole arrays (float64)."""
    weights = latitude_weights(inputs.lat)[:, None] * np.ones((1, inputs.forecast.shape[1]))
    f = _clean(inputs.forecast)
    o = _clean(inputs.truth)
    c = _clean(inputs.climatology)
    ref = _clean(inputs.reference) if inputs.reference is not None else c

    error = f - o
    valid = np.isfinite(error)
    valid_points = int(valid.sum())
    bias = float(np.mean(error[valid])) if valid_points else math.nan
    corrected_error = error - bias

    forecast_anomaly, truth_anomaly = _pairwise(f - c, o - c)
    floor = config.anomaly_std_floor
    stds = (_population_std(forecast_anomaly), _population_std(truth_anomaly))
    if all(std >= floor for std in stds):  # False for NaN (no common points)
        acc = _pearson(forecast_anomaly, truth_anomaly, weights, config)
    else:
        acc = math.nan

    has_reference = inputs.reference is not None
    return FieldSummary(
        valid_points=valid_points,
        bias=bias,
        mse_raw=_weighted_mean(error * error, weights),
        mse=_weighted_mean(corrected_error * corrected_error, weights),
        mse_reference=_weighted_mean((ref - o) ** 2, weights),
        mae_weighted=_weighted_mean(np.abs(error), weights),
        bias_weighted=_weighted_mean(error, weights),
        acc=acc,
        clone_mse=_weighted_mean((f - ref) ** 2, weights) if has_reference else None,
        pattern_r=_pearson(f, ref, weights, config) if has_reference else None,
    )
