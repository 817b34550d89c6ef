"""Latitude weights (cos of latitude) for the metrics and half-thickness weights for the levels.

numpy is imported only when latitude weights are computed, so the level aggregation and the
run aggregation (which need only level weights) stay free of heavy imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gaia.tasks.weather.scoring.config import LevelConfig

if TYPE_CHECKING:
    import numpy as np


def latitude_weights(lat: np.ndarray) -> np.ndarray:
    """cos(latitude) in float64 for a 1-D array of latitudes in degrees.

    Raises ValueError for a latitude that is not finite or lies outside [-90, 90].
    """
    import numpy as np

    lat = np.asarray(lat, dtype=np.float64)
    if lat.ndim != 1:
        raise ValueError(f"latitudes must be 1-D, got shape {lat.shape}")
    bad = ~np.isfinite(lat) | (np.abs(lat) > 90.0)
    if bad.any():
        raise ValueError(f"latitudes must be finite and within [-90, 90], got {lat[bad][:5]}")
    weights: np.ndarray = np.cos(np.deg2rad(lat))
    return weights


def level_weights(levels: Iterable[int], config: LevelConfig | None = None) -> dict[int, float]:
    """Normalised half-thickness weights of the given levels.

    The normalisation is over every level of the config's table (the weights of a full set of
    levels sum to 1). Raises ValueError for a level the table does not know.
    """
    table = (config or LevelConfig()).half_thickness_hpa
    total = sum(table.values())
    result: dict[int, float] = {}
    for level in levels:
        if level not in table:
            known = sorted(table)
            raise ValueError(f"level {level} hPa has no half-thickness weight; known: {known}")
        result[level] = table[level] / total
    return result
