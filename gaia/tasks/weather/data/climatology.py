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

from gaia.tasks.weather.data.errors import ClimatologyError
from gaia.tasks.weather.data.grid import Grid
from gaia.tasks.weather.data.planes import PlaneStore
from gaia.tasks.weather.data.regrid import PlanCache, match_level

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
    """A lazily opened climatology store; slots, names, levels and plans are looked up once."""

    def __init__(self, store: PlaneStore, plans: PlanCache | None = None) -> None:
        for dim in ("dayofyear", "hour"):
            if dim not in store.dataset.coords:
                raise ClimatologyError(f"climatology has no '{dim}' coordinate")
        self._store = store
        self._plans = plans or PlanCache()
        self.grid: Grid = store.grid
        self._days = np.asarray(store.coord("dayofyear")).astype(np.int64)
        self._hours = np.asarray(store.coord("hour")).astype(np.int64)
        self._names: dict[str, str] = {}
        self._slots: dict[tuple[int, int], tuple[int, int]] = {}
        self._levels: dict[tuple[str, int], int] = {}

    @classmethod
    def open(cls, path: Path, plans: PlanCache | None = None) -> Climatology:
        store = PlaneStore.open(path, label="climatology")
        try:
            return cls(store, plans)
        except BaseException:
            store.close()
            raise

    def name_of(self, variable: str) -> str:
        found = self._names.get(variable)
        if found is not None:
            return found
        for candidate in (variable, WB2_NAMES.get(variable)):
            if candidate is not None and self._store.has(candidate):
                self._names[variable] = candidate
                return candidate
        raise ClimatologyError(f"climatology has no variable {variable!r} (nor its WB2 name)")

    def _slot(self, valid_time: datetime) -> tuple[int, int]:
        """Indices of the (dayofyear, hour) entry of a valid time."""
        day, hour = climatology_slot(valid_time)
        found = self._slots.get((day, hour))
        if found is None:
            day_index = np.flatnonzero(self._days == day)
            hour_index = np.flatnonzero(self._hours == hour)
            if day_index.size == 0:
                raise ClimatologyError(f"climatology has no dayofyear {day} (for {valid_time})")
            if hour_index.size == 0:
                raise ClimatologyError(f"climatology has no hour {hour} (for {valid_time})")
            found = (int(day_index[0]), int(hour_index[0]))
            self._slots[(day, hour)] = found
        return found

    def _level_index(self, variable: str, level: int) -> int:
        found = self._levels.get((variable, level))
        if found is None:
            found = match_level(
                self._store.coord("level"), level, np.inf, what=f"climatology {variable}"
            )
            self._levels[(variable, level)] = found
        return found

    def plane(self, variable: str, level: int | None, valid_time: datetime) -> np.ndarray:
        """The climatology plane on its own grid."""
        day_index, hour_index = self._slot(valid_time)
        reader = self._store.reader(self.name_of(variable))
        selection: dict[str, int] = {"dayofyear": day_index, "hour": hour_index}
        if "level" in reader.dims:
            if level is None:
                raise ClimatologyError(f"climatology {variable} has levels; a level is required")
            selection["level"] = self._level_index(variable, level)
        elif level is not None:
            raise ClimatologyError(f"climatology {variable} has no level dimension")
        if set(reader.dims) != set(selection):
            raise ClimatologyError(
                f"climatology {variable} has dimensions {list(reader.dims)} besides lat/lon; "
                f"expected {sorted(selection)}"
            )
        return reader.read(selection)

    def on_grid(
        self, variable: str, level: int | None, valid_time: datetime, target: Grid
    ) -> np.ndarray:
        """The climatology plane interpolated bilinearly onto `target`."""
        plan = self._plans.plan(self.grid, target)
        return plan.apply(self.plane(variable, level, valid_time))

    def close(self) -> None:
        self._store.close()
