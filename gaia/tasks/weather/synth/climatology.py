"""The synthetic run's WeatherBench2-layout climatology.

A full WB2 climatology (366 days x 4 hours x 13 levels) is ~2 GB per variable group even at 1.5 deg,
so the synthetic store keeps the WB2 layout and names but holds only the days of year the run's
valid times touch (all four hours of each) on a coarser grid (3 deg by default), which the loader
interpolates bilinearly onto the truth grid like any climatology. Latitude is stored ascending with
WB2 names, as WeatherBench2 does, so the loader's grid normalisation is exercised too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gaia.tasks.weather.data.climatology import WB2_NAMES
from gaia.tasks.weather.data.grid import regular_grid
from gaia.tasks.weather.data.stores import ArraySpec, PlaneStoreWriter
from gaia.tasks.weather.synth.atmosphere import Atmosphere
from gaia.tasks.weather.synth.modes import SphereBasis
from gaia.tasks.weather.variables import ALL_VARIABLES, LEVELS, PRESSURE_VARIABLES, VARIABLES

HOURS = (0, 6, 12, 18)


def write_climatology(path: Path, *, seed: int, resolution: float, days: Iterable[int]) -> None:
    """Write the climate means of `seed` for `days` x all four hours on a `resolution` grid."""
    grid = regular_grid(resolution)
    atmosphere = Atmosphere(seed, SphereBasis(grid.lat, grid.lon), LEVELS)
    day_list = sorted(set(days))
    coords = {
        "dayofyear": np.asarray(day_list, dtype=np.int64),
        "hour": np.asarray(HOURS, dtype=np.int64),
        "level": np.asarray(LEVELS, dtype=np.int64),
        "latitude": grid.lat[::-1].copy(),
        "longitude": grid.lon.copy(),
    }
    arrays = {}
    for name in ALL_VARIABLES:
        dims: tuple[str, ...] = ("dayofyear", "hour")
        if name in PRESSURE_VARIABLES:
            dims += ("level",)
        arrays[WB2_NAMES[name]] = ArraySpec((*dims, "latitude", "longitude"), VARIABLES[name].units)
    attrs = {"source": "gaia synthetic climatology"}
    with PlaneStoreWriter(path, coords, arrays, attrs=attrs) as w:
        for day_index, day in enumerate(day_list):
            for hour_index, hour in enumerate(HOURS):
                for name in ALL_VARIABLES:
                    mean = atmosphere.mean(name, day, hour)[:, ::-1, :].astype(np.float32)
                    index = (day_index, hour_index)
                    w.write(WB2_NAMES[name], index, mean if name in PRESSURE_VARIABLES else mean[0])
