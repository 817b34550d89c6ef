"""FastScorer: every per-field metric of spec section 2 from one fused pass over the arrays.

The field is processed in blocks of latitude rows sized to stay in the core's L2 cache. Each
block of the inputs is read once: forecast, truth and climatology (and the reference) are cast
to float64 straight into the slots of a reused block buffer, and the slots are then turned in
place into the few differences every metric is built from:

    d = f - o, |d|, a = o - c                                   (every field)
    q = f - ref, e = ref - o, v = ref - K                       (with a reference)

with K a constant near the reference's mean (so v is small). Per-row sums, sums of squares and
the cross products d*a and q*v are then taken with BLAS dot products, one row at a time (each
well below the size at which OpenBLAS would start threads). Latitude weights are applied to the
per-row results afterwards, so one pass yields both the weighted and the unweighted sums.

Every metric is then derived algebraically from those moments: the bias-corrected MSE as
E_w[(d - b)^2] = E_w[d^2] - b (2 E_w[d] - b) with b the unweighted mean of d; the forecast
anomaly f - c = d + a through E[(f-c)^2] = E[d^2] + 2 E[d a] + E[a^2]; and the forecast itself,
shifted, as f - K = q + v. Raw-moment formulas lose digits when the terms they combine are large
against the result; each such result is checked (the size of its terms over its value must stay
below condition_limit) and the field falls back to the exact two-pass path when it is not, as it
does when any value is missing. Results agree with ReferenceScorer to 1e-9 relative.

The block buffer (on a huge page where the system offers them), the per-row result arrays and
the latitude weights are kept per scorer instance and per thread, keyed by the field's shape, so
scoring field after field allocates no large array. Measured costs and the choices behind this
layout (one core, 721 x 1440 float32): each float32 -> float64 cast costs about as much as
reading the three inputs once, and every further float64 pass over a block about half that;
numpy's mixed-type ufuncs (np.subtract(f, o, dtype=float64)) were no faster than a cast followed
by a float64 subtraction, and batched small matrix products (a per-row Gram matrix) were several
times slower than the per-row dot products used here.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import threading
from dataclasses import dataclass

import numpy as np

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.config import MetricConfig
from gaia.tasks.weather.scoring.skill import correlation
from gaia.tasks.weather.scoring.summary import FieldSummary, build_metrics
from gaia.tasks.weather.scoring.twopass import exact_summary
from gaia.tasks.weather.scoring.weights import latitude_weights

# Slots of the block buffer. Sums are taken over slots [0, summed), squares over slots [1, end)
# (row i of the squares is slot i + 1) and cross products pair slot 1 + j with slot 1 + pairs + j.
_ABS_ERROR, _ERROR = 0, 1  # |f - o|, f - o: both layouts
_ANOMALY = 2  # o - c, without a reference
_CLONE, _REF_ANOMALY, _REF_SHIFTED, _REF_ERROR = 2, 3, 4, 5  # f-ref, o-c, ref-K, ref-o


@dataclass(frozen=True)
class _Layout:
    slots: int
    summed: int
    pairs: int  # cross rows: (f-o)(o-c), and with a reference also (f-ref)(ref-K)


_WITHOUT_REFERENCE = _Layout(slots=3, summed=3, pairs=1)
_WITH_REFERENCE = _Layout(slots=6, summed=5, pairs=2)

_BLOCK_BYTES = 1 << 20
"""Default size of the block buffer: well inside a 2 MiB L2 with room for the input lines."""
_KEPT_WORKSPACES = 4
"""Workspaces (one per field shape and layout) kept per scorer and thread."""
_HUGE_PAGE = 2 << 20


class _IllConditioned(Exception):
    """A raw-moment formula would lose too many digits; use the exact two-pass path."""


def _block_buffer(shape: tuple[int, int, int]) -> np.ndarray:
    """An uninitialised float64 array on transparent huge pages where the system offers them.

    The block buffer lives in L2 while a field is scored. On 4 KiB pages its physical placement is
    random, and an unlucky placement crowds some cache sets (measured: up to 20% slower, varying
    from one buffer to the next); one 2 MiB page maps it contiguously.
    """
    count = shape[0] * shape[1] * shape[2]
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None or count * 8 < _HUGE_PAGE // 4:  # a small buffer is not worth 2 MiB
        return np.empty(shape)
    size = -(-count * 8 // _HUGE_PAGE) * _HUGE_PAGE
    # private anonymous memory (shared memory would need shmem huge pages); the slack leaves room
    # to start on a 2 MiB boundary
    region = mmap.mmap(-1, size + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    whole = np.frombuffer(region, dtype=np.uint8)
    start = -whole.ctypes.data % _HUGE_PAGE
    with contextlib.suppress(OSError):  # no transparent huge pages: ordinary pages serve
        region.madvise(advice, start, size)
    return whole[start : start + count * 8].view(np.float64).reshape(shape)


class _Workspace:
    """The reused block buffer, per-row result arrays and per-block views for one field shape."""

    def __init__(self, rows: int, cols: int, layout: _Layout, block_rows: int) -> None:
        self.layout = layout
        block = min(block_rows, rows)
        self.buffer = _block_buffer((layout.slots, block, cols))
        self.ones = np.ones(cols)
        self._lat_key = b""
        self._row_weights = (self.ones[:0], 0.0)
        pairs = layout.pairs
        # per-row sums, then squares, then cross products, in one array reduced at once
        self.per_row = np.empty((layout.summed + layout.slots - 1 + pairs, rows))
        sums, squares, cross = np.split(self.per_row, [layout.summed, -pairs])
        # per block: its rows, one view per slot, then (operands, output) of each reduction
        self.blocks = []
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            x = self.buffer[:, : stop - start]
            self.blocks.append(
                (
                    slice(start, stop),
                    tuple(x),
                    (x[: layout.summed], sums[:, start:stop]),
                    (x[1:], squares[:, start:stop]),
                    (x[1 : 1 + pairs], x[1 + pairs : 1 + 2 * pairs], cross[:, start:stop]),
                )
            )

    def row_weights(self, lat: np.ndarray) -> tuple[np.ndarray, float]:
        """The latitude weights of the rows and their sum (kept while the latitudes repeat)."""
        lat = np.asarray(lat)
        key = lat.dtype.str.encode() + lat.tobytes()
        if key != self._lat_key:
            weights = latitude_weights(lat)
            self._row_weights = (weights, math.fsum(weights.tolist()))
            self._lat_key = key
        return self._row_weights

    def accumulate(self, inputs: FieldInputs, shift: float) -> None:
        """One pass over the field: per-row sums, squares and cross products of the slots."""
        forecast, truth, climatology = inputs.forecast, inputs.truth, inputs.climatology
        reference = inputs.reference
        ones = self.ones
        vecdot, subtract, absolute = np.vecdot, np.subtract, np.abs
        for rows, slots, (summed, sums), (squared, squares), (left, right, cross) in self.blocks:
            if reference is None:
                abs_error, error, anomaly = slots
            else:
                abs_error, error, clone, anomaly, ref_shifted, ref_error = slots
            error[...] = forecast[rows]
            anomaly[...] = truth[rows]  # o, until it becomes o - c below
            if reference is not None:
                ref_shifted[...] = reference[rows]
                subtract(error, ref_shifted, clone)
                subtract(ref_shifted, anomaly, ref_error)
                subtract(ref_shifted, shift, ref_shifted)
            abs_error[...] = climatology[rows]  # c waits in the |f - o| slot
            subtract(error, anomaly, error)
            subtract(anomaly, abs_error, anomaly)
            absolute(error, abs_error)
            vecdot(summed, ones, out=sums)
            vecdot(squared, squared, out=squares)
            vecdot(left, right, out=cross)


@dataclass(frozen=True)
class _Moments:
    """Means over the field (weighted or not) of the slots, their squares and cross products."""

    mean: list[float]  # by slot, for the summed slots
    square: list[float]  # by slot (index 0, |d|, unused)
    cross: list[float]  # (f-o)(o-c), then (f-ref)(ref-K)

    @classmethod
    def of(cls, total: np.ndarray, count: float, layout: _Layout) -> _Moments:
        """The means, from totals over the rows (weighted or not) of the per-row results."""
        means: list[float] = (total / count).tolist()
        squares_end = layout.summed + layout.slots - 1
        return cls(
            mean=means[: layout.summed],
            square=[math.nan, *means[layout.summed : squares_end]],
            cross=means[squares_end:],
        )


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
    """A constant near the reference's mean, so ref - K is small (see module doc)."""
    if reference is None:
        return 0.0
    step = max(1, min(reference.shape) // 32)
    return float(np.mean(reference[::step, ::step], dtype=np.float64))


class FastScorer:
    """Scores one field with the fused one-pass kernel (exact two-pass path as fallback).

    block_rows is the number of latitude rows per block; by default it is chosen so the block
    buffer takes about 1 MiB. An instance may be shared between threads (each thread gets its own
    buffers).
    """

    def __init__(
        self,
        config: MetricConfig | None = None,
        *,
        block_rows: int | None = None,
        condition_limit: float = 1e3,
    ) -> None:
        if block_rows is not None and block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        if not condition_limit >= 1.0:
            raise ValueError(f"condition_limit must be >= 1, got {condition_limit}")
        self.config = config or MetricConfig()
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
        workspace = self._workspace(rows, cols, inputs.reference is not None)
        workspace.accumulate(inputs, shift)
        per_row, layout = workspace.per_row, workspace.layout
        if not np.isfinite(per_row).all():  # a missing value
            return None
        row_weights, row_weight_total = workspace.row_weights(inputs.lat)
        weighted = _Moments.of(per_row @ row_weights, cols * row_weight_total, layout)
        unweighted = _Moments.of(per_row.sum(axis=1), float(rows * cols), layout)
        try:
            return self._derive(inputs, weighted, unweighted, shift)
        except _IllConditioned:
            return None

    def _workspace(self, rows: int, cols: int, with_reference: bool) -> _Workspace:
        layout = _WITH_REFERENCE if with_reference else _WITHOUT_REFERENCE
        block_rows = self.block_rows or max(1, _BLOCK_BYTES // (layout.slots * cols * 8))
        cache: dict[tuple[int, int, _Layout, int], _Workspace] | None = getattr(
            self._local, "workspaces", None
        )
        if cache is None:
            cache = self._local.workspaces = {}
        key = (rows, cols, layout, block_rows)
        workspace = cache.pop(key, None)
        if workspace is None:
            workspace = _Workspace(rows, cols, layout, block_rows)
            while len(cache) >= _KEPT_WORKSPACES:
                del cache[next(iter(cache))]  # the least recently used
        cache[key] = workspace
        return workspace

    def _derive(
        self, inputs: FieldInputs, weighted: _Moments, unweighted: _Moments, shift: float
    ) -> FieldSummary:
        limit = self.condition_limit
        anomaly = _ANOMALY if inputs.reference is None else _REF_ANOMALY

        bias = unweighted.mean[_ERROR]
        mse_raw = weighted.square[_ERROR]
        mean_error = weighted.mean[_ERROR]
        correction = bias * (2.0 * mean_error - bias)  # b is unweighted: not bounded by mse_raw
        magnitude = mse_raw + abs(bias) * (2.0 * abs(mean_error) + abs(bias))
        mse = _guarded(magnitude, mse_raw - correction, limit)

        def forecast_anomaly(m: _Moments) -> tuple[float, float, float, float]:
            """Mean, mean square, variance of f - c = d + (o - c), and E[(f-c)(o-c)]."""
            anomaly_mean = m.mean[_ERROR] + m.mean[anomaly]
            parts = (m.square[_ERROR], 2.0 * m.cross[0], m.square[anomaly])
            anomaly_square = math.fsum(parts)
            magnitude = parts[0] + abs(parts[1]) + parts[2]
            variance = _guarded(magnitude, anomaly_square - anomaly_mean**2, limit)
            return anomaly_mean, anomaly_square, variance, m.cross[0] + parts[2]

        def truth_anomaly_variance(m: _Moments) -> float:
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
            mse_reference = weighted.square[_REF_ERROR]
            clone_mse = weighted.square[_CLONE]
            pattern_r = _pattern_correlation(weighted, shift, limit, spread)
        else:
            mse_reference = weighted.square[anomaly]  # the climatology is the reference

        return FieldSummary(
            valid_points=inputs.forecast.size,
            bias=bias,
            mse_raw=mse_raw,
            mse=mse,
            mse_reference=mse_reference,
            mae_weighted=weighted.mean[_ABS_ERROR],
            bias_weighted=mean_error,
            acc=acc,
            clone_mse=clone_mse,
            pattern_r=pattern_r,
        )


def _pattern_correlation(m: _Moments, shift: float, limit: float, spread: float) -> float:
    """Weighted r(f, ref) from the moments of q = f - ref and v = ref - K (f - K = q + v)."""
    v_mean, v_square = m.mean[_REF_SHIFTED], m.square[_REF_SHIFTED]
    qv = m.cross[1]
    f_mean = m.mean[_CLONE] + v_mean  # of f - K
    parts = (m.square[_CLONE], 2.0 * qv, v_square)
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
