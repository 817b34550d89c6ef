"""The compiled accumulator of FastScorer: one fused loop per field, compiled by numba.

Each element of forecast, truth and climatology (and the reference) is read once, widened to
float64 in a register, and every difference of ``layout.py`` with its sum, square and cross
product is accumulated there, per latitude row, in float64. No intermediate array is written, so
the pass costs about what reading the inputs costs (measured at 0.25 deg: 1.0x the read-once
floor without a reference, 1.4x with one), against ~5x for the numpy row-block path, whose
float32 -> float64 casts alone cost twice the floor.

Floating point: ``reassoc`` lets the compiler split each row's sums over the SIMD lanes (a few
partial sums, like numpy's own pairwise blocks) and ``contract`` allows fused multiply-adds; the
rules that keep NaN and infinity meaningful stay on, so a missing value still shows as a NaN row
sum and the caller falls back to the exact two-pass path.

This module imports numba at import time; FastScorer imports it only when the compiled engine is
chosen. Compiled code is cached on disk (numba's cache, next to this file or in the user's cache
directory), so a fresh process loads it instead of compiling.
"""

from __future__ import annotations

import numba
import numpy as np

from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.scoring.layout import WITH_REFERENCE, WITHOUT_REFERENCE, Layout

_FASTMATH = {"reassoc", "contract"}


@numba.njit(fastmath=_FASTMATH, nogil=True, cache=True)
def _moments(f: np.ndarray, o: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:
    """Per row: sums of |d|, d, a; of d*d, a*a; of d*a (d = f - o, a = o - c)."""
    rows, cols = f.shape
    for i in range(rows):
        s_abs = s_d = s_a = 0.0
        q_d = q_a = 0.0
        x_da = 0.0
        for j in range(cols):
            truth = np.float64(o[i, j])
            d = np.float64(f[i, j]) - truth
            a = truth - np.float64(c[i, j])
            s_abs += abs(d)
            s_d += d
            s_a += a
            q_d += d * d
            q_a += a * a
            x_da += d * a
        out[0, i], out[1, i], out[2, i] = s_abs, s_d, s_a
        out[3, i], out[4, i] = q_d, q_a
        out[5, i] = x_da


@numba.njit(fastmath=_FASTMATH, nogil=True, cache=True)
def _moments_with_reference(
    f: np.ndarray, o: np.ndarray, c: np.ndarray, r: np.ndarray, shift: float, out: np.ndarray
) -> None:
    """Per row: sums of |d|, d, q, a, v; of d*d, q*q, a*a, v*v, e*e; of d*a and q*v."""
    rows, cols = f.shape
    for i in range(rows):
        s_abs = s_d = s_q = s_a = s_v = 0.0
        q_d = q_q = q_a = q_v = q_e = 0.0
        x_da = x_qv = 0.0
        for j in range(cols):
            forecast = np.float64(f[i, j])
            truth = np.float64(o[i, j])
            reference = np.float64(r[i, j])
            d = forecast - truth
            q = forecast - reference
            a = truth - np.float64(c[i, j])
            v = reference - shift
            e = reference - truth
            s_abs += abs(d)
            s_d += d
            s_q += q
            s_a += a
            s_v += v
            q_d += d * d
            q_q += q * q
            q_a += a * a
            q_v += v * v
            q_e += e * e
            x_da += d * a
            x_qv += q * v
        out[0, i], out[1, i], out[2, i], out[3, i], out[4, i] = s_abs, s_d, s_q, s_a, s_v
        out[5, i], out[6, i], out[7, i], out[8, i], out[9, i] = q_d, q_q, q_a, q_v, q_e
        out[10, i], out[11, i] = x_da, x_qv


class CompiledAccumulator:
    """The per-row moments of fields of one shape, by the compiled loops above."""

    def __init__(self, rows: int, layout: Layout) -> None:
        if layout not in (WITHOUT_REFERENCE, WITH_REFERENCE):
            raise ValueError(f"no compiled kernel for layout {layout}")
        self.layout = layout
        self.per_row = np.empty((layout.moments, rows))

    def accumulate(self, inputs: FieldInputs, shift: float) -> np.ndarray:
        """One pass over the field; returns the per-row moments (reused on the next call)."""
        if inputs.reference is None:
            _moments(inputs.forecast, inputs.truth, inputs.climatology, self.per_row)
        else:
            _moments_with_reference(
                inputs.forecast,
                inputs.truth,
                inputs.climatology,
                inputs.reference,
                float(shift),
                self.per_row,
            )
        return self.per_row
