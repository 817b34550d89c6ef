"""FastScorer: every per-field metric of spec section 2 from one fused pass over the arrays.

The field is processed in blocks of latitude rows small enough to stay in cache. For each block
the inputs are cast to float64 once, the differences d = f - o and o - c (and, with a reference,
f - ref, ref - o, f - K, ref - K for a pilot constant K near the reference's mean) are formed, and
per-row sums and sums of squares/products are taken with BLAS-backed row reductions. Latitude
weights are applied afterwards to the per-row results, so one pass yields both the weighted and
the unweighted sums. Every metric is then derived algebraically: the bias-corrected MSE as
E_w[(d - b)^2] = E_w[d^2] - b (2 E_w[d] - b) with b the unweighted mean of d, and the forecast
anomaly f - c = d + (o - c) through E[(f-c)^2] = E[d^2] + 2 E[d (o-c)] + E[(o-c)^2].

Raw-moment formulas lose digits when the terms they combine are large against the result; each
such result is checked (the size of its terms over its value must stay below condition_limit)
and the field falls back to the exact two-pass path when it is not, as it does when any value is
missing. Results agree with ReferenceScorer to 1e-9 relative.
"""

from __future__ import annotations

import math

import numpy as np

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.config import MetricConfig
from gaia.tasks.weather.scoring.skill import correlation
from gaia.tasks.weather.scoring.summary import FieldSummary, build_metrics
from gaia.tasks.weather.scoring.twopass import exact_summary
from gaia.tasks.weather.scoring.weights import latitude_weights

# Slots of the per-block float64 buffer (and rows of the per-row moment arrays).
_ABS_ERROR, _ERROR, _O_ANOMALY = 0, 1, 2  # |f-o|, f-o, o-c
_F_SHIFTED, _REF_SHIFTED, _F_MINUS_REF, _REF_ERROR = 3, 4, 5, 6  # f-K, ref-K, f-ref, ref-o
_SLOTS_WITHOUT_REFERENCE, _SLOTS_WITH_REFERENCE = 3, 7
_CROSS_ANOMALY, _CROSS_SHIFTED = 0, 1  # (f-o)(o-c), (f-K)(ref-K)


class _IllConditioned(Exception):
    """A raw-moment formula would lose too many digits; use the exact two-pass path."""


def _accumulate(
    inputs: FieldInputs, block_rows: int, shift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the field: per-row sums, sums of squares and cross products of the slots."""
    rows, cols = inputs.forecast.shape
    has_reference = inputs.reference is not None
    slots = _SLOTS_WITH_REFERENCE if has_reference else _SLOTS_WITHOUT_REFERENCE
    summed = _REF_SHIFTED + 1 if has_reference else _O_ANOMALY + 1
    sums = np.zeros((slots, rows))
    squares = np.zeros((slots, rows))
    cross = np.zeros((2, rows))
    block = min(block_rows, rows)
    buffer = np.empty((slots, block, cols))
    ones = np.ones(cols)
    # f is cast into the slot that first needs it; c borrows the |f - o| slot until |f - o| is due
    forecast_slot = _F_SHIFTED if has_reference else _ERROR
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        x = buffer[:, : stop - start]
        np.copyto(x[forecast_slot], inputs.forecast[start:stop])
        np.copyto(x[_O_ANOMALY], inputs.truth[start:stop])  # o, becomes o - c below
        np.subtract(x[forecast_slot], x[_O_ANOMALY], out=x[_ERROR])
        if inputs.reference is not None:
            np.copyto(x[_REF_SHIFTED], inputs.reference[start:stop])
            np.subtract(x[_F_SHIFTED], x[_REF_SHIFTED], out=x[_F_MINUS_REF])
            np.subtract(x[_REF_SHIFTED], x[_O_ANOMALY], out=x[_REF_ERROR])
            np.subtract(x[_F_SHIFTED], shift, out=x[_F_SHIFTED])
            np.subtract(x[_REF_SHIFTED], shift, out=x[_REF_SHIFTED])
        np.copyto(x[_ABS_ERROR], inputs.climatology[start:stop])
        np.subtract(x[_O_ANOMALY], x[_ABS_ERROR], out=x[_O_ANOMALY])
        np.abs(x[_ERROR], out=x[_ABS_ERROR])
        np.matmul(x[:summed], ones, out=sums[:summed, start:stop])
        np.vecdot(x[1:], x[1:], out=squares[1:, start:stop])
        np.vecdot(x[_ERROR], x[_O_ANOMALY], out=cross[_CROSS_ANOMALY, start:stop])
        if has_reference:
            np.vecdot(x[_F_SHIFTED], x[_REF_SHIFTED], out=cross[_CROSS_SHIFTED, start:stop])
    return sums, squares, cross


def _guarded(magnitude: float, centred: float, limit: float) -> float:
    """A centred quantity derived from raw moments, if it kept enough digits.

    magnitude is the total size of the non-negative terms it was combined from. A zero magnitude
    means every value involved is zero, so the centred value is exactly zero.
    """
    if magnitude == 0.0:
        return 0.0
    if not centred > 0.0 or magnitude > limit * centred:
        raise _IllConditioned
    return centred


def _pilot_shift(reference: np.ndarray | None) -> float:
    """A constant near the reference's mean, so f - K and ref - K are small (see module doc)."""
    if reference is None:
        return 0.0
    step = max(1, min(reference.shape) // 32)
    return float(np.mean(reference[::step, ::step], dtype=np.float64))


class FastScorer:
    """Scores one field with the fused one-pass kernel (exact two-pass path as fallback)."""

    def __init__(
        self,
        config: MetricConfig | None = None,
        *,
        block_rows: int = 24,
        condition_limit: float = 1e3,
    ) -> None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        if not condition_limit >= 1.0:
            raise ValueError(f"condition_limit must be >= 1, got {condition_limit}")
        self.config = config or MetricConfig()
        self.block_rows = block_rows
        self.condition_limit = condition_limit

    def score(self, inputs: FieldInputs) -> FieldMetrics:
        return build_metrics(inputs, self.summarise(inputs))

    def summarise(self, inputs: FieldInputs) -> FieldSummary:
        """The per-field numbers; one pass when the field is complete and well conditioned."""
        summary = self.one_pass(inputs)
        return summary if summary is not None else exact_summary(inputs, self.config)

    def one_pass(self, inputs: FieldInputs) -> FieldSummary | None:
        """The one-pass result, or None when the field has a missing value or is too badly
        conditioned for raw moments (the caller then needs the exact two-pass path)."""
        shift = _pilot_shift(inputs.reference)
        per_row = _accumulate(inputs, self.block_rows, shift)
        if not all(np.isfinite(moments).all() for moments in per_row):  # a missing value
            return None
        try:
            return self._derive(inputs, per_row, shift)
        except _IllConditioned:
            return None

    def _derive(
        self,
        inputs: FieldInputs,
        per_row: tuple[np.ndarray, np.ndarray, np.ndarray],
        shift: float,
    ) -> FieldSummary:
        rows, cols = inputs.forecast.shape
        count = rows * cols
        row_weights = latitude_weights(inputs.lat)
        weight = cols * math.fsum(row_weights.tolist())
        # weighted (w) and unweighted (u) means of the slots, their squares and cross products
        mean_w, square_w, cross_w = ((m @ row_weights / weight).tolist() for m in per_row)
        mean_u, square_u, cross_u = ((m.sum(axis=1) / count).tolist() for m in per_row)
        limit = self.condition_limit

        bias = mean_u[_ERROR]
        mse_raw = square_w[_ERROR]
        mean_error = mean_w[_ERROR]
        correction = bias * (2.0 * mean_error - bias)  # b is unweighted: not bounded by mse_raw
        magnitude = mse_raw + abs(bias) * (2.0 * abs(mean_error) + abs(bias))
        mse = _guarded(magnitude, mse_raw - correction, limit)

        def forecast_anomaly(
            mean: list[float], square: list[float], cross: list[float]
        ) -> tuple[float, float, float, float]:
            """Mean, mean square, variance of f - c = d + (o - c), and E[(f-c)(o-c)]."""
            anomaly_mean = mean[_ERROR] + mean[_O_ANOMALY]
            parts = (square[_ERROR], 2.0 * cross[_CROSS_ANOMALY], square[_O_ANOMALY])
            anomaly_square = math.fsum(parts)
            magnitude = parts[0] + abs(parts[1]) + parts[2]
            variance = _guarded(magnitude, anomaly_square - anomaly_mean**2, limit)
            return anomaly_mean, anomaly_square, variance, cross[_CROSS_ANOMALY] + parts[2]

        def truth_anomaly_variance(mean: list[float], square: list[float]) -> float:
            centred = square[_O_ANOMALY] - mean[_O_ANOMALY] ** 2
            return _guarded(square[_O_ANOMALY], centred, limit)

        acc = math.nan
        floor = self.config.anomaly_std_floor
        spread = self.config.constant_relative_spread
        f_variance_u = forecast_anomaly(mean_u, square_u, cross_u)[2]
        o_variance_u = truth_anomaly_variance(mean_u, square_u)
        if math.sqrt(f_variance_u) >= floor and math.sqrt(o_variance_u) >= floor:
            f_mean, f_square, f_variance, f_cross = forecast_anomaly(mean_w, square_w, cross_w)
            o_variance = truth_anomaly_variance(mean_w, square_w)
            covariance = f_cross - f_mean * mean_w[_O_ANOMALY]
            acc = correlation(
                covariance, f_variance, o_variance, f_square, square_w[_O_ANOMALY], spread
            )

        clone_mse: float | None = None
        pattern_r: float | None = None
        if inputs.reference is not None:
            mse_reference = square_w[_REF_ERROR]
            clone_mse = square_w[_F_MINUS_REF]
            variances = [
                _guarded(square_w[s], square_w[s] - mean_w[s] ** 2, limit)
                for s in (_F_SHIFTED, _REF_SHIFTED)
            ]
            f_mean, r_mean = mean_w[_F_SHIFTED], mean_w[_REF_SHIFTED]
            pattern_r = correlation(
                cross_w[_CROSS_SHIFTED] - f_mean * r_mean,
                variances[0],
                variances[1],
                square_w[_F_SHIFTED] + shift * (2.0 * f_mean + shift),  # mean square of f itself
                square_w[_REF_SHIFTED] + shift * (2.0 * r_mean + shift),
                spread,
            )
        else:
            mse_reference = square_w[_O_ANOMALY]  # the climatology is the reference

        return FieldSummary(
            valid_points=count,
            bias=bias,
            mse_raw=mse_raw,
            mse=mse,
            mse_reference=mse_reference,
            mae_weighted=mean_w[_ABS_ERROR],
            bias_weighted=mean_error,
            acc=acc,
            clone_mse=clone_mse,
            pattern_r=pattern_r,
        )
