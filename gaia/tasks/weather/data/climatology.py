"""WeatherBench2-layout climatology: selection for a valid time and regridding onto the truth grid.

Layout: dims (dayofyear 1-366, hour in {0, 6, 12, 18}, [level,] latitude, longitude). For a valid
time v the slot is dayofyear(v) and hour = floor(hour(v) / 6) * 6, with no interpolation in time;
the nearest level is taken; the plane is interpolated bilinearly onto the truth grid (spec 1).
Variables may be named by their short names or by WeatherBench2's long names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr

from gaia.tasks.weather.data.errors import ClimatologyError
from gaia.tasks.weather.data.grid import Grid, grid_of
from gaia.tasks.weather.data.regrid import PlanCache, match_level
from gaia.tasks.weather.data.stores import open_dataset

WB2_NAMES: dict[str, str] = {
    "2t": "2m_temperature",
    "10u": "10m_u_component_of_wind",
    "10v": "10m_v_component_of_wind",
    "msl": "mean_sea_level_pressure",
    "t": "temperature",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
    "q": "specific_humidity",
    "z": "geopotential",
}
"""WeatherBench2 long names of the short variable names."""


def climatology_slot(valid_time: datetime) -> tuple[int, int]:
    """(dayofyear, hour) of the climatology entry for a valid time."""
    if valid_time.tzinfo is not None:
        valid_time = valid_time.astimezone(UTC)
    return valid_time.timetuple().tm_yday, (valid_time.hour // 6) * 6


class Climatology:
    """A lazily opened climatology store with cached regridding plans."""

    def __init__(self, ds: xr.Dataset, plans: PlanCache | None = None) -> None:
        for dim in ("dayofyear", "hour"):
            if dim not in ds.coords:
                raise ClimatologyError(f"climatology has no '{dim}' coordinate")
        self._ds = ds
        self._plans = plans or PlanCache()
        self.grid: Grid = grid_of(ds)
        self._days = np.asarray(ds["dayofyear"].values).astype(np.int64)
        self._hours = np.asarray(ds["hour"].values).astype(np.int64)

    @classmethod
    def open(cls, path: Path, plans: PlanCache | None = None) -> Climatology:
        return cls(open_dataset(path), plans)

    def name_of(self, variable: str) -> str:
        for candidate in (variable, WB2_NAMES.get(variable)):
            if candidate is not None and candidate in self._ds.data_vars:
                return candidate
        raise ClimatologyError(f"climatology has no variable {variable!r} (nor its WB2 name)")

    def plane(self, variable: str, level: int | None, valid_time: datetime) -> np.ndarray:
        """The climatology plane on its own grid."""
        day, hour = climatology_slot(valid_time)
        day_index = np.flatnonzero(self._days == day)
        hour_index = np.flatnonzero(self._hours == hour)
        if day_index.size == 0:
            raise ClimatologyError(f"climatology has no dayofyear {day} (for {valid_time})")
        if hour_index.size == 0:
            raise ClimatologyError(f"climatology has no hour {hour} (for {valid_time})")
        array = self._ds[self.name_of(variable)]
        selection: dict[str, int] = {"dayofyear": int(day_index[0]), "hour": int(hour_index[0])}
        if "level" in array.dims:
            if level is None:
                raise ClimatologyError(f"climatology {variable} has levels; a level is required")
            selection["level"] = match_level(
                array["level"].values, level, np.inf, what=f"climatology {variable}"
            )
        elif level is not None:
            raise ClimatologyError(f"climatology {variable} has no level dimension")
        data = array.isel(selection).transpose("lat", "lon")
        return np.asarray(data.values)

    def on_grid(
        self, variable: str, level: int | None, valid_time: datetime, target: Grid
    ) -> np.ndarray:
        """The climatology plane interpolated bilinearly onto `target`."""
        plan = self._plans.plan(self.grid, target)
        return plan.apply(self.plane(variable, level, valid_time))

    def close(self) -> None:
        self._ds.close()
