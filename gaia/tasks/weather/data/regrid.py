"""Alignment onto the truth grid: bilinear regridding, time matching and level matching.

`BilinearPlan.between(source, target)` precomputes, once per grid pair, the neighbour indices and
weights along latitude and longitude; `plan.apply(field)` then costs two gathers and two
multiply-adds per point. Bilinear interpolation on a lat/lon grid is separable, so the plan
interpolates along latitude first, then along longitude. Target points outside the source's
latitude range (or outside its longitude range when the source does not go round the globe)
become NaN; a global source is wrapped across the 360 -> 0 seam. A NaN neighbour with a non-zero
weight makes the result NaN; a neighbour with zero weight is never read, so a target point that
coincides with a source point reproduces it exactly, and equal grids give the identity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from gaia.tasks.weather.data.errors import GridError, LevelMatchError, TimeMatchError
from gaia.tasks.weather.data.grid import Grid

_EDGE_TOL = 1e-9


@dataclass(frozen=True)
class _Axis:
    """Per target coordinate: two source indices, the weight of the second, and validity."""

    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray
    valid: np.ndarray

    @property
    def all_valid(self) -> bool:
        return bool(self.valid.all())


def _axis(source: np.ndarray, target: np.ndarray) -> _Axis:
    """Linear-interpolation table for an ascending source axis."""
    n = source.size
    valid = (target >= source[0] - _EDGE_TOL) & (target <= source[-1] + _EDGE_TOL)
    clipped = np.clip(target, source[0], source[-1])
    hi = np.clip(np.searchsorted(source, clipped, side="left"), 1, n - 1)
    lo = hi - 1
    span = source[hi] - source[lo]
    weight = (clipped - source[lo]) / span
    return _snap(_Axis(lo=lo, hi=hi, weight=weight, valid=valid))


def _snap(axis: _Axis) -> _Axis:
    """Make exact hits read one neighbour only (so a NaN next door cannot leak in)."""
    lo, hi, weight = axis.lo.copy(), axis.hi.copy(), axis.weight.copy()
    at_lo = weight <= _EDGE_TOL
    at_hi = weight >= 1 - _EDGE_TOL
    hi[at_lo] = lo[at_lo]
    lo[at_hi] = hi[at_hi]
    weight[at_lo | at_hi] = 0.0
    return _Axis(lo=lo, hi=hi, weight=weight, valid=axis.valid)


def _lat_axis(source: np.ndarray, target: np.ndarray) -> _Axis:
    # Grids store latitude descending; interpolate on the reversed (ascending) axis.
    n = source.size
    ascending = _axis(source[::-1], target)
    return _Axis(
        lo=n - 1 - ascending.lo,
        hi=n - 1 - ascending.hi,
        weight=ascending.weight,
        valid=ascending.valid,
    )


def _lon_axis(source: Grid, target: np.ndarray) -> _Axis:
    lon = source.lon
    if not source.wraps:
        return _axis(lon, target)
    n = lon.size
    extended = np.concatenate([lon, [lon[0] + 360.0]])
    shifted = np.where(target < lon[0] - _EDGE_TOL, target + 360.0, target)
    axis = _axis(extended, shifted)
    lo = np.where(axis.lo == n, 0, axis.lo)
    hi = np.where(axis.hi == n, 0, axis.hi)
    return _Axis(lo=lo, hi=hi, weight=axis.weight, valid=axis.valid)


@dataclass(frozen=True)
class _Weights:
    """One plan's weights (and their complements) in one float dtype, shaped to broadcast."""

    lat_lo: np.ndarray
    lat_hi: np.ndarray
    lon_lo: np.ndarray
    lon_hi: np.ndarray


@dataclass(frozen=True)
class BilinearPlan:
    """Index/weight tables from one source grid onto one target grid."""

    source_shape: tuple[int, int]
    target_shape: tuple[int, int]
    identity: bool
    lat: _Axis
    lon: _Axis
    _weights: dict[np.dtype, _Weights] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )
    """Weights per float dtype, made on first use."""

    @classmethod
    def between(cls, source: Grid, target: Grid) -> BilinearPlan:
        return cls(
            source_shape=source.shape,
            target_shape=target.shape,
            identity=source.same_as(target),
            lat=_lat_axis(source.lat, target.lat),
            lon=_lon_axis(source, target.lon),
        )

    def _weights_in(self, dtype: np.dtype) -> _Weights:
        found = self._weights.get(dtype)
        if found is None:
            wy = self.lat.weight.astype(dtype)[:, None]
            wx = self.lon.weight.astype(dtype)[None, :]
            found = _Weights(lat_lo=1 - wy, lat_hi=wy, lon_lo=1 - wx, lon_hi=wx)
            self._weights[dtype] = found
        return found

    def apply(self, field: np.ndarray) -> np.ndarray:
        """Interpolate a 2-D (lat, lon) field; float32 stays float32, integers become float64.

        The identity plan returns `field` itself; otherwise the result is a new array.
        """
        if field.shape != self.source_shape:
            raise GridError(f"field shape {field.shape} != plan source shape {self.source_shape}")
        if self.identity:
            return field
        dtype = field.dtype if np.issubdtype(field.dtype, np.floating) else np.dtype(np.float64)
        data = np.asarray(field, dtype=dtype)
        weights = self._weights_in(dtype)
        # lo * (1 - w) + hi * w along latitude, then along longitude: the same operations and
        # roundings as the expression written out, done in place on fresh gathers.
        rows = data[self.lat.lo]
        rows *= weights.lat_lo
        upper = data[self.lat.hi]
        upper *= weights.lat_hi
        rows += upper
        out: np.ndarray = rows[:, self.lon.lo]
        out *= weights.lon_lo
        right = rows[:, self.lon.hi]
        right *= weights.lon_hi
        out += right
        if not self.lat.all_valid:
            out[~self.lat.valid, :] = np.nan
        if not self.lon.all_valid:
            out[:, ~self.lon.valid] = np.nan
        return out


class PlanCache:
    """Plans keyed by (source grid, target grid): built once, reused for every field."""

    def __init__(self) -> None:
        self._plans: dict[tuple[bytes, bytes], BilinearPlan] = {}

    def plan(self, source: Grid, target: Grid) -> BilinearPlan:
        key = (source.key(), target.key())
        found = self._plans.get(key)
        if found is None:
            found = BilinearPlan.between(source, target)
            self._plans[key] = found
        return found


def _as_datetime64(value: datetime) -> np.datetime64:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(value, "ns")


def match_time(
    times: np.ndarray, wanted: datetime, tolerance: timedelta, *, what: str = "time"
) -> int:
    """Index of the time nearest `wanted` (earliest on a tie); TimeMatchError beyond tolerance."""
    values = np.asarray(times).astype("datetime64[ns]")
    if values.size == 0:
        raise TimeMatchError(f"{what}: no times available (wanted {wanted.isoformat()})")
    target = _as_datetime64(wanted)
    distance = np.abs(values - target)
    index = int(np.argmin(distance))
    gap = distance[index] / np.timedelta64(1, "s")
    if gap > tolerance.total_seconds():
        raise TimeMatchError(
            f"{what}: no time within {tolerance} of {np.datetime_as_string(target, 's')}; "
            f"nearest is {np.datetime_as_string(values[index], 's')} "
            f"({gap / 3600:.2f} h away)"
        )
    return index


def match_level(
    levels: np.ndarray, wanted: float, tolerance_hpa: float, *, what: str = "level"
) -> int:
    """Index of the level nearest `wanted` hPa; LevelMatchError beyond the tolerance."""
    values = np.asarray(levels, dtype=np.float64)
    if values.size == 0:
        raise LevelMatchError(f"{what}: no pressure levels available (wanted {wanted} hPa)")
    distance = np.abs(values - float(wanted))
    index = int(np.argmin(distance))
    if distance[index] > tolerance_hpa:
        raise LevelMatchError(
            f"{what}: no level within {tolerance_hpa:g} hPa of {wanted:g} hPa; "
            f"nearest is {values[index]:g} hPa"
        )
    return index
