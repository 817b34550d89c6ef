"""ERA5-stage data checks, edge salvage and climatology fill (spec section 6).

Every failure raises `DataCheckError` with its `CheckKind` and a reason naming the variable (and
level). The repairs work in place on a field already aligned onto the truth grid and report how many
points they touched, so nothing is changed silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from gaia.tasks.weather.data.errors import (
    CheckKind,
    DataCheckError,
    LevelMatchError,
    TimeMatchError,
)
from gaia.tasks.weather.data.regrid import match_level, match_time

EXPECTED_UNITS: dict[str, str] = {
    "2t": "K", "t": "K", "10u": "m s-1", "10v": "m s-1", "u": "m s-1", "v": "m s-1",
    "msl": "Pa", "z": "m2 s-2",
}
"""Unit attribute each variable must carry if it carries one; q is not checked."""

_UNIT_SPELLINGS: dict[str, str] = {
    "k": "K", "kelvin": "K", "kelvins": "K", "degk": "K",
    "ms-1": "m s-1", "m/s": "m s-1", "ms**-1": "m s-1", "ms^-1": "m s-1",
    "meterspersecond": "m s-1",
    "metrespersecond": "m s-1", "metre/second": "m s-1", "meter/second": "m s-1",
    "pa": "Pa", "pascal": "Pa", "pascals": "Pa",
    "m2s-2": "m2 s-2", "m**2s**-2": "m2 s-2", "m^2s^-2": "m2 s-2", "m^2/s^2": "m2 s-2",
    "m**2/s**2": "m2 s-2", "m2/s2": "m2 s-2",
}


def canonical_units(units: str) -> str | None:
    """The canonical spelling of a unit string, or None if it is not one we know."""
    squeezed = re.sub(r"\s+", "", units).lower()
    return _UNIT_SPELLINGS.get(squeezed)


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of the data checks; defaults are the spec's."""

    max_abs_value: float = 1e12
    manipulation_coverage: float = 0.1
    min_coverage: float = 0.9985
    edge_salvage: bool = True
    fill_from_climatology: bool = True


@dataclass(frozen=True)
class FieldRepair:
    """What the checks did to one aligned forecast field."""

    salvaged_points: int
    filled_points: int
    coverage: float
    """Finite fraction after edge salvage, before the climatology fill."""


def _where(variable: str, level: int | None) -> str:
    return variable if level is None else f"{variable}@{level}"


def check_variables_present(available: Iterable[str], required: Iterable[str]) -> None:
    have = set(available)
    missing = [name for name in required if name not in have]
    if missing:
        raise DataCheckError(
            CheckKind.MISSING_VARIABLE,
            f"forecast lacks required variable(s) {', '.join(missing)}",
            variable=missing[0],
        )


def check_units(units: Mapping[str, str | None]) -> None:
    """Unit attributes must match the expected ones when present (q is not checked)."""
    for variable, found in units.items():
        expected = EXPECTED_UNITS.get(variable)
        if expected is None or found is None:
            continue
        if canonical_units(found) != expected:
            raise DataCheckError(
                CheckKind.UNITS,
                f"{variable} has units {found!r}, expected {expected!r}",
                variable=variable,
            )


def check_time_exact(times: np.ndarray, valid_time: datetime, *, what: str) -> int:
    try:
        return match_time(times, valid_time, timedelta(0), what=what)
    except TimeMatchError as exc:
        raise DataCheckError(CheckKind.TIME, exc.reason) from exc


def check_levels_exact(levels: np.ndarray, wanted: Iterable[int], *, what: str) -> dict[int, int]:
    """Index of every wanted level, which must be present exactly."""
    found: dict[int, int] = {}
    for level in wanted:
        try:
            found[level] = match_level(levels, level, 0.0, what=what)
        except LevelMatchError as exc:
            raise DataCheckError(CheckKind.LEVEL, exc.reason, level=level) from exc
    return found


def check_shape(
    field: np.ndarray, shape: tuple[int, ...], variable: str, level: int | None
) -> None:
    if field.shape != shape:
        raise DataCheckError(
            CheckKind.SHAPE,
            f"{_where(variable, level)} has shape {field.shape} after alignment, expected {shape}",
            variable=variable,
            level=level,
        )


def check_values(
    field: np.ndarray, config: CheckConfig, variable: str, level: int | None
) -> float:
    """Manipulation and coverage checks; returns the finite coverage."""
    return _check_counted(field, _FiniteSummary.of(field), config, variable, level)


@dataclass(frozen=True)
class _FiniteSummary:
    """How many points are finite, and the largest |value| when all of them are."""

    finite: int
    max_abs: float | None

    @classmethod
    def of(cls, field: np.ndarray) -> _FiniteSummary:
        if field.size == 0:
            return cls(0, None)
        # min and max propagate NaN and keep infinities: both finite means every point is.
        low, high = float(field.min()), float(field.max())
        if math.isfinite(low) and math.isfinite(high):
            return cls(int(field.size), max(-low, high))
        return cls(int(np.count_nonzero(np.isfinite(field))), None)

    def huge_count(self, field: np.ndarray, limit: float) -> int:
        """Points with |value| > limit (infinities included)."""
        if self.max_abs is not None and self.max_abs <= limit:
            return 0
        with np.errstate(invalid="ignore"):
            return int(np.count_nonzero(np.abs(field) > limit))


def _check_counted(
    field: np.ndarray,
    summary: _FiniteSummary,
    config: CheckConfig,
    variable: str,
    level: int | None,
) -> float:
    where = _where(variable, level)
    huge = summary.huge_count(field, config.max_abs_value)
    if huge:
        raise DataCheckError(
            CheckKind.MANIPULATION,
            f"{where} has {huge} value(s) with |value| > {config.max_abs_value:g}",
            variable=variable,
            level=level,
        )
    coverage = float(summary.finite) / field.size if field.size else 0.0
    if coverage < config.manipulation_coverage:
        raise DataCheckError(
            CheckKind.MANIPULATION,
            f"{where} finite coverage {coverage:.4f} < {config.manipulation_coverage}",
            variable=variable,
            level=level,
        )
    if coverage < config.min_coverage:
        raise DataCheckError(
            CheckKind.COVERAGE,
            f"{where} finite coverage {coverage:.6f} < {config.min_coverage}",
            variable=variable,
            level=level,
        )
    return coverage


def salvage_edges(field: np.ndarray) -> int:
    """Copy NaNs on the one-cell border from the adjacent interior row/column, in place.

    Rows first (top from row 1, bottom from row -2), then columns (left from column 1, right from
    column -2); only finite donors are copied. Returns the number of points filled.
    """
    if field.ndim != 2 or min(field.shape) < 3:
        return 0
    filled = 0
    for edge, donor in ((0, 1), (-1, -2)):
        gaps = np.isnan(field[edge, :]) & np.isfinite(field[donor, :])
        field[edge, gaps] = field[donor, gaps]
        filled += int(np.count_nonzero(gaps))
    for edge, donor in ((0, 1), (-1, -2)):
        gaps = np.isnan(field[:, edge]) & np.isfinite(field[:, donor])
        field[gaps, edge] = field[gaps, donor]
        filled += int(np.count_nonzero(gaps))
    return filled


def fill_from_climatology(field: np.ndarray, climatology: np.ndarray) -> int:
    """Replace the remaining non-finite points by climatology, in place; returns the count."""
    gaps = ~np.isfinite(field)
    count = int(np.count_nonzero(gaps))
    if count:
        field[gaps] = climatology[gaps]
    return count


def repair_field(
    field: np.ndarray,
    climatology: np.ndarray,
    config: CheckConfig,
    variable: str,
    level: int | None,
    *,
    checked: bool,
) -> FieldRepair:
    """Salvage edges; then, if `checked` (ERA5 stage), run value checks and fill from climatology.

    `field` must be writable; it is modified in place.
    """
    salvaged = salvage_edges(field) if config.edge_salvage else 0
    summary = _FiniteSummary.of(field)
    if not checked:
        coverage = float(summary.finite) / field.size if field.size else 0.0
        return FieldRepair(salvaged_points=salvaged, filled_points=0, coverage=coverage)
    check_shape(field, climatology.shape, variable, level)
    coverage = _check_counted(field, summary, config, variable, level)
    filled = 0
    if config.fill_from_climatology and summary.finite < field.size:
        filled = fill_from_climatology(field, climatology)
    return FieldRepair(salvaged_points=salvaged, filled_points=filled, coverage=coverage)
