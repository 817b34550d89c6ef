"""FastScorer: every per-field metric of spec section 2 from one fused pass over the arrays.

The field is processed in blocks of latitude rows small enough to stay in cache. For each block
the inputs are cast to float64 once, the differences d = f - o, f - c, o - c (and, with a
reference, f - ref, ref - o, f - K, ref - K for a pilot constant K) are formed, and per-row sums
and sums of squares/products are taken with BLAS-backed row dot products. Latitude weights are
applied afterwards to the per-row results, so one pass yields both the weighted and the
unweighted sums. Every metric is then derived algebraically, e.g. the bias-corrected MSE as
E_w[(d - b)^2] = E_w[d^2] - b (2 E_w[d] - b) with b the unweighted mean of d.

Raw-moment formulas lose digits when a mean is large against the spread; each such result is
checked (its condition number second-moment / centred-value must stay below condition_limit)
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
_ABS_ERROR, _F_ANOMALY, _O_ANOMALY, _ERROR = 0, 1, 2, 3  # |f-o|, f-c, o-c, f-o
_F_SHIFTED, _REF_SHIFTED, _F_MINUS_REF, _REF_ERROR = 4, 5, 6, 7  # f-K, ref-K, f-ref, ref-o
_SLOTS_WITHOUT_REFERENCE, _SLOTS_WITH_REFERENCE = 4, 8
_CROSS_ANOMALY, _CROSS_SHIFTED = 0, 1  # (f-c)(o-c), (f-K)(ref-K)


class _IllConditioned(Exception):
    """A raw-moment formula would lose too many digits; use the exact two-pass path."""


class _Moments:
    """Per-row sums (and sums of squares / products) of every slot, then their totals."""

    def __init__(self, slots: int, rows: int) -> None:
        self.sums = np.zeros((slots, rows))
        self.squares = np.zeros((slots, rows))
        self.cross = np.zeros((2, rows))

    def totals(self, weights: np.ndarray) -> tuple[np.ndarray, ...]:
        """Weighted sums, squares, cross products; then unweighted sums and squares."""
        return (
            self.sums @ weights,
            self.squares @ weights,
            self.cross @ weights,
            self.sums.sum(axis=1),
            self.squares.sum(axis=1),
        )


def _accumulate(inputs: FieldInputs, block_rows: int, shift: float) -> _Moments:
    """One pass over the field: per-row moments of every slot."""
    rows, cols = inputs.forecast.shape
    has_reference = inputs.reference is not None
    slots = _SLOTS_WITH_REFERENCE if has_reference else _SLOTS_WITHOUT_REFERENCE
    moments = _Moments(slots, rows)
    block = min(block_rows, rows)
    buffer = np.empty((slots, block, cols))
    climatology = np.empty((block, cols))
    ones = np.ones(cols)
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        x = buffer[:, : stop - start]
        clim = climatology[: stop - start]
        np.copyto(x[_F_ANOMALY], inputs.forecast[start:stop])  # f, becomes f - c below
        np.copyto(x[_O_ANOMALY], inputs.truth[start:stop])  # o, becomes o - c below
        np.copyto(clim, inputs.climatology[start:stop])
        np.subtract(x[_F_ANOMALY], x[_O_ANOMALY], out=x[_ERROR])
        if inputs.reference is not None:
            np.copyto(x[_REF_SHIFTED], inputs.reference[start:stop])
            np.subtract(x[_F_ANOMALY], x[_REF_SHIFTED], out=x[_F_MINUS_REF])
            np.subtract(x[_REF_SHIFTED], x[_O_ANOMALY], out=x[_REF_ERROR])
            np.subtract(x[_F_ANOMALY], shift, out=x[_F_SHIFTED])
            np.subtract(x[_REF_SHIFTED], shift, out=x[_REF_SHIFTED])
        np.subtract(x[_F_ANOMALY], clim, out=x[_F_ANOMALY])
        np.subtract(x[_O_ANOMALY], clim, out=x[_O_ANOMALY])
        np.abs(x[_ERROR], out=x[_ABS_ERROR])
        summed = _REF_SHIFTED + 1 if has_reference else _ERROR + 1
        np.vecdot(x[:summed], ones, out=moments.sums[:summed, start:stop])
        np.vecdot(x[1:], x[1:], out=moments.squares[1:, start:stop])
        np.vecdot(x[_F_ANOMALY], x[_O_ANOMALY], out=moments.cross[_CROSS_ANOMALY, start:stop])
        if has_reference:
            np.vecdot(x[_F_SHIFTED], x[_REF_SHIFTED], out=moments.cross[_CROSS_SHIFTED, start:stop])
    return moments


def _guarded(second_moment: float, centred: float, limit: float) -> float:
    """A centred second moment derived from raw moments, if it kept enough digits.

    second_moment is the raw mean square it was derived from (>= 0). A zero raw moment means
    every value is zero, so the centred value is exactly zero.
    """
    if second_moment == 0.0:
        return 0.0
    if not centred > 0.0 or second_moment > limit * centred:
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
        moments = _accumulate(inputs, self.block_rows, shift)
        totals = moments.totals(latitude_weights(inputs.lat))
        if not all(np.isfinite(t).all() for t in totals):  # a missing value somewhere
            return None
        try:
            return self._derive(inputs, totals, shift)
        except _IllConditioned:
            return None

    def _derive(
        self, inputs: FieldInputs, totals: tuple[np.ndarray, ...], shift: float
    ) -> FieldSummary:
        sums_w, squares_w, cross_w, sums, squares = (t.tolist() for t in totals)
        rows, cols = inputs.forecast.shape
        count = rows * cols
        weight = float(cols * math.fsum(latitude_weights(inputs.lat).tolist()))
        limit = self.condition_limit

        def weighted_moments(slot: int) -> tuple[float, float, float]:
            """(weighted mean, weighted mean square, weighted variance) of one slot."""
            mean = sums_w[slot] / weight
            mean_square = squares_w[slot] / weight
            return mean, mean_square, _guarded(mean_square, mean_square - mean * mean, limit)

        def unweighted_std(slot: int) -> float:
            mean_square = squares[slot] / count
            mean = sums[slot] / count
            return math.sqrt(_guarded(mean_square, mean_square - mean * mean, limit))

        bias = sums[_ERROR] / count
        mse_raw = squares_w[_ERROR] / weight
        mean_error = sums_w[_ERROR] / weight
        mse = _guarded(mse_raw, mse_raw - bias * (2.0 * mean_error - bias), limit)

        acc = math.nan
        floor = self.config.anomaly_std_floor
        spread = self.config.constant_relative_spread
        if unweighted_std(_F_ANOMALY) >= floor and unweighted_std(_O_ANOMALY) >= floor:
            f_mean, f_square, f_variance = weighted_moments(_F_ANOMALY)
            o_mean, o_square, o_variance = weighted_moments(_O_ANOMALY)
            covariance = cross_w[_CROSS_ANOMALY] / weight - f_mean * o_mean
            acc = correlation(covariance, f_variance, o_variance, f_square, o_square, spread)

        clone_mse: float | None = None
        pattern_r: float | None = None
        if inputs.reference is not None:
            mse_reference = squares_w[_REF_ERROR] / weight
            clone_mse = squares_w[_F_MINUS_REF] / weight
            f_mean, f_square, f_variance = weighted_moments(_F_SHIFTED)
            r_mean, r_square, r_variance = weighted_moments(_REF_SHIFTED)
            covariance = cross_w[_CROSS_SHIFTED] / weight - f_mean * r_mean
            pattern_r = correlation(
                covariance,
                f_variance,
                r_variance,
                f_square + shift * (2.0 * f_mean + shift),  # mean square of f itself
                r_square + shift * (2.0 * r_mean + shift),
                spread,
            )
        else:
            mse_reference = squares_w[_O_ANOMALY] / weight  # climatology is the reference

        return FieldSummary(
            valid_points=count,
            bias=bias,
            mse_raw=mse_raw,
            mse=mse,
            mse_reference=mse_reference,
            mae_weighted=sums_w[_ABS_ERROR] / weight,
            bias_weighted=mean_error,
            acc=acc,
            clone_mse=clone_mse,
            pattern_r=pattern_r,
        )
