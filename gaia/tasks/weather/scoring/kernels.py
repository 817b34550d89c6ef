"""FastScorer: every per-field metric of spec section 2 from one fused pass over the arrays.

One pass over forecast, truth and climatology (and the reference) yields per-row sums, sums of
squares and cross products of a few differences (``layout.py``); latitude weights are applied to
the per-row results afterwards, so one pass gives both the weighted and the unweighted moments.
Two accumulators produce them: a loop compiled by numba (``compiled.py``, about the cost of
reading the inputs once) and a numpy row-block kernel (``blocks.py``, used where numba is not
installed). ``engine`` chooses: "auto" (compiled when numba imports), "compiled" or "numpy".

Every metric is then derived algebraically from those moments: the bias-corrected MSE as
E_w[(d - b)^2] = E_w[d^2] - b (2 E_w[d] - b) with b the unweighted mean of d; the forecast
anomaly f - c = d + a through E[(f-c)^2] = E[d^2] + 2 E[d a] + E[a^2]; and the forecast itself,
shifted, as f - K = q + v. Raw-moment formulas lose digits when the terms they combine are large
against the result; each such result is checked (the size of its terms over its value must stay
below condition_limit) and the field falls back to the exact two-pass path when it is not, as it
does when any value is missing. Results agree with ReferenceScorer to 1e-9 relative.

Accumulators (with their buffers) are kept per scorer instance and per thread, keyed by the
field's shape, so scoring field after field allocates no large array.
"""

from __future__ import annotations

import math
import threading
from typing import Literal, Protocol

import numpy as np

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.config import MetricConfig
from gaia.tasks.weather.scoring.layout import (
    ABS_ERROR,
    ANOMALY,
    CLONE,
    ERROR,
    REF_ANOMALY,
    REF_ERROR,
    REF_SHIFTED,
    WITH_REFERENCE,
    WITHOUT_REFERENCE,
    Layout,
    Moments,
    RowWeights,
)
from gaia.tasks.weather.scoring.skill import correlation
from gaia.tasks.weather.scoring.summary import FieldSummary, build_metrics
from gaia.tasks.weather.scoring.twopass import exact_summary

Engine = Literal["auto", "compiled", "numpy"]
ENGINES: tuple[Engine, ...] = ("auto", "compiled", "numpy")
_KEPT_ACCUMULATORS = 4
"""Accumulators (one per field shape and layout) kept per scorer and thread."""


class Accumulator(Protocol):
    layout: Layout

    def accumulate(self, inputs: FieldInputs, shift: float) -> np.ndarray: ...


class _IllConditioned(Exception):
    """A raw-moment formula would lose too many digits; use the exact two-pass path."""


def compiled_available() -> bool:
    """Whether the compiled accumulator can be used (numba imports)."""
    try:
        import gaia.tasks.weather.scoring.compiled  # noqa: F401
    except ImportError:
        return False
    return True


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
    """A constant near the reference's mean, so ref - K is small (see layout.py)."""
    if reference is None:
        return 0.0
    step = max(1, min(reference.shape) // 32)
    return float(np.mean(reference[::step, ::step], dtype=np.float64))


class FastScorer:
    """Scores one field with the fused one-pass kernel (exact two-pass path as fallback).

    engine picks the accumulator: "auto" (the compiled one when numba is installed, else numpy),
    "compiled" (an ImportError names the missing extra) or "numpy". block_rows, for the numpy
    accumulator only, is the number of latitude rows per block; by default the block buffer takes
    about 1 MiB. An instance may be shared between threads (each thread gets its own buffers).
    """

    def __init__(
        self,
        config: MetricConfig | None = None,
        *,
        engine: Engine = "auto",
        block_rows: int | None = None,
        condition_limit: float = 1e3,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "compiled" and not compiled_available():
            raise ImportError(
                "FastScorer(engine='compiled') needs numba, part of the weather extra: "
                "pip install 'gaia-validator-core[weather]'"
            )
        if block_rows is not None and block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        if not condition_limit >= 1.0:
            raise ValueError(f"condition_limit must be >= 1, got {condition_limit}")
        self.config = config or MetricConfig()
        self.engine = engine
        self.block_rows = block_rows
        self.condition_limit = condition_limit
        self._local = threading.local()

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        del state["_local"]  # buffers are per process and thread
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def resolved_engine(self) -> Literal["compiled", "numpy"]:
        """The accumulator "auto" stands for here (imports numba on first use)."""
        if self.engine == "auto":
            self.engine = "compiled" if compiled_available() else "numpy"
        return self.engine

    def score(self, inputs: FieldInputs) -> FieldMetrics:
        return build_metrics(inputs, self.summarise(inputs))

    def summarise(self, inputs: FieldInputs) -> FieldSummary:
        """The per-field numbers; one pass when the field is complete and well conditioned."""
        summary = self.one_pass(inputs)
        return summary if summary is not None else exact_summary(inputs, self.config)

    def one_pass(self, inputs: FieldInputs) -> FieldSummary | None:
        """The one-pass result, or None when the field has a missing value or is too badly
        conditioned for raw moments (the caller then needs the exact two-pass path)."""
        rows, cols = inputs.forecast.shape
        if rows * cols == 0:
            return None
        shift = _pilot_shift(inputs.reference)
        accumulator = self._accumulator(rows, cols, inputs.reference is not None)
        per_row = accumulator.accumulate(inputs, shift)
        if not np.isfinite(per_row).all():  # a missing value
            return None
        layout = accumulator.layout
        row_weights, row_weight_total = self._row_weights().of(inputs.lat)
        weighted = Moments.of(per_row @ row_weights, cols * row_weight_total, layout)
        unweighted = Moments.of(per_row.sum(axis=1), float(rows * cols), layout)
        try:
            return self._derive(inputs, weighted, unweighted, shift)
        except _IllConditioned:
            return None

    def _row_weights(self) -> RowWeights:
        weights: RowWeights | None = getattr(self._local, "row_weights", None)
        if weights is None:
            weights = self._local.row_weights = RowWeights()
        return weights

    def _accumulator(self, rows: int, cols: int, with_reference: bool) -> Accumulator:
        layout = WITH_REFERENCE if with_reference else WITHOUT_REFERENCE
        engine = self.resolved_engine
        cache: dict[tuple[int, int, Layout], Accumulator] | None = getattr(
            self._local, "accumulators", None
        )
        if cache is None:
            cache = self._local.accumulators = {}
        key = (rows, cols, layout)
        accumulator = cache.pop(key, None)
        if accumulator is None:
            accumulator = self._new_accumulator(engine, rows, cols, layout)
            while len(cache) >= _KEPT_ACCUMULATORS:
                del cache[next(iter(cache))]  # the least recently used
        cache[key] = accumulator
        return accumulator

    def _new_accumulator(self, engine: str, rows: int, cols: int, layout: Layout) -> Accumulator:
        if engine == "compiled":
            from gaia.tasks.weather.scoring.compiled import CompiledAccumulator

            return CompiledAccumulator(rows, layout)
        from gaia.tasks.weather.scoring.blocks import BlockAccumulator, default_block_rows

        block_rows = self.block_rows or default_block_rows(layout, cols)
        return BlockAccumulator(rows, cols, layout, block_rows)

    def _derive(
        self, inputs: FieldInputs, weighted: Moments, unweighted: Moments, shift: float
    ) -> FieldSummary:
        limit = self.condition_limit
        anomaly = ANOMALY if inputs.reference is None else REF_ANOMALY

        bias = unweighted.mean[ERROR]
        mse_raw = weighted.square[ERROR]
        mean_error = weighted.mean[ERROR]
        correction = bias * (2.0 * mean_error - bias)  # b is unweighted: not bounded by mse_raw
        magnitude = mse_raw + abs(bias) * (2.0 * abs(mean_error) + abs(bias))
        mse = _guarded(magnitude, mse_raw - correction, limit)

        def forecast_anomaly(m: Moments) -> tuple[float, float, float, float]:
            """Mean, mean square, variance of f - c = d + (o - c), and E[(f-c)(o-c)]."""
            anomaly_mean = m.mean[ERROR] + m.mean[anomaly]
            parts = (m.square[ERROR], 2.0 * m.cross[0], m.square[anomaly])
            anomaly_square = math.fsum(parts)
            magnitude = parts[0] + abs(parts[1]) + parts[2]
            variance = _guarded(magnitude, anomaly_square - anomaly_mean**2, limit)
            return anomaly_mean, anomaly_square, variance, m.cross[0] + parts[2]

        def truth_anomaly_variance(m: Moments) -> float:
            centred = m.square[anomaly] - m.mean[anomaly] ** 2
            return _guarded(m.square[anomaly], centred, limit)

        acc = math.nan
        floor = self.config.anomaly_std_floor
        spread = self.config.constant_relative_spread
        f_variance_u = forecast_anomaly(unweighted)[2]
        o_variance_u = truth_anomaly_variance(unweighted)
        if math.sqrt(f_variance_u) >= floor and math.sqrt(o_variance_u) >= floor:
            f_mean, f_square, f_variance, f_cross = forecast_anomaly(weighted)
            o_variance = truth_anomaly_variance(weighted)
            covariance = f_cross - f_mean * weighted.mean[anomaly]
            acc = correlation(
                covariance, f_variance, o_variance, f_square, weighted.square[anomaly], spread
            )

        clone_mse: float | None = None
        pattern_r: float | None = None
        if inputs.reference is not None:
            mse_reference = weighted.square[REF_ERROR]
            clone_mse = weighted.square[CLONE]
            pattern_r = _pattern_correlation(weighted, shift, limit, spread)
        else:
            mse_reference = weighted.square[anomaly]  # the climatology is the reference

        return FieldSummary(
            valid_points=inputs.forecast.size,
            bias=bias,
            mse_raw=mse_raw,
            mse=mse,
            mse_reference=mse_reference,
            mae_weighted=weighted.mean[ABS_ERROR],
            bias_weighted=mean_error,
            acc=acc,
            clone_mse=clone_mse,
            pattern_r=pattern_r,
        )


def _pattern_correlation(m: Moments, shift: float, limit: float, spread: float) -> float:
    """Weighted r(f, ref) from the moments of q = f - ref and v = ref - K (f - K = q + v)."""
    v_mean, v_square = m.mean[REF_SHIFTED], m.square[REF_SHIFTED]
    qv = m.cross[1]
    f_mean = m.mean[CLONE] + v_mean  # of f - K
    parts = (m.square[CLONE], 2.0 * qv, v_square)
    f_square = math.fsum(parts)  # of f - K
    magnitude = parts[0] + abs(parts[1]) + parts[2]
    f_variance = _guarded(magnitude, f_square - f_mean**2, limit)
    v_variance = _guarded(v_square, v_square - v_mean**2, limit)
    return correlation(
        qv + v_square - f_mean * v_mean,  # E[(f-K)(ref-K)] - E[f-K] E[ref-K]
        f_variance,
        v_variance,
        f_square + shift * (2.0 * f_mean + shift),  # mean square of f itself
        v_square + shift * (2.0 * v_mean + shift),  # and of ref
        spread,
    )
