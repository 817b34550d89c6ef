"""What a one-pass accumulator produces: per-row moments of a field, in a fixed layout.

Both accumulators of FastScorer (the compiled kernel in ``compiled.py`` and the numpy row-block
kernel in ``blocks.py``) fill the same array: one row per moment, one column per latitude row.
The moments are taken of a few differences every metric is built from:

    d = f - o, |d|, a = o - c                                   (every field)
    q = f - ref, e = ref - o, v = ref - K                       (with a reference)

with K a constant near the reference's mean (so v is small). The slots, in order, are |d|, d, a
without a reference and |d|, d, q, a, v, e with one. Rows of the array: the sums of the first
``summed`` slots, the sums of squares of slots 1 .. end, then the cross products d*a (and q*v).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gaia.tasks.weather.scoring.weights import latitude_weights

# Slot numbers (see module doc)
ABS_ERROR, ERROR = 0, 1  # |f - o|, f - o: both layouts
ANOMALY = 2  # o - c, without a reference
CLONE, REF_ANOMALY, REF_SHIFTED, REF_ERROR = 2, 3, 4, 5  # f-ref, o-c, ref-K, ref-o


@dataclass(frozen=True)
class Layout:
    slots: int
    summed: int
    pairs: int  # cross rows: (f-o)(o-c), and with a reference also (f-ref)(ref-K)

    @property
    def moments(self) -> int:
        """Rows of the per-row moment array."""
        return self.summed + self.slots - 1 + self.pairs


WITHOUT_REFERENCE = Layout(slots=3, summed=3, pairs=1)
WITH_REFERENCE = Layout(slots=6, summed=5, pairs=2)


@dataclass(frozen=True)
class Moments:
    """Means over the field (weighted or not) of the slots, their squares and cross products."""

    mean: list[float]  # by slot, for the summed slots
    square: list[float]  # by slot (index 0, |d|, unused)
    cross: list[float]  # (f-o)(o-c), then (f-ref)(ref-K)

    @classmethod
    def of(cls, total: np.ndarray, count: float, layout: Layout) -> Moments:
        """The means, from totals over the rows (weighted or not) of the per-row moments."""
        means: list[float] = (total / count).tolist()
        squares_end = layout.summed + layout.slots - 1
        return cls(
            mean=means[: layout.summed],
            square=[math.nan, *means[layout.summed : squares_end]],
            cross=means[squares_end:],
        )


class RowWeights:
    """The latitude weights of a field's rows and their sum, kept while the latitudes repeat."""

    def __init__(self) -> None:
        self._key = b""
        self._weights = (np.empty(0), 0.0)

    def of(self, lat: np.ndarray) -> tuple[np.ndarray, float]:
        lat = np.asarray(lat)
        key = lat.dtype.str.encode() + lat.tobytes()
        if key != self._key:
            weights = latitude_weights(lat)
            self._weights = (weights, math.fsum(weights.tolist()))
            self._key = key
        return self._weights
