"""Grid conventions of the weather domain: lat 90 -> -90, lon 0 -> 360 - step (spec section 1).

`normalise_grid` renames latitude/longitude to lat/lon, flips an ascending latitude and maps
longitudes given in -180..180 (or any other range) onto [0, 360) in ascending order. It only
re-indexes, so a lazily opened dataset stays lazy. `Grid` is the plain numpy description of a
normalised grid that the regridder works from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from gaia.tasks.weather.data.errors import GridError

_RENAMES = {"latitude": "lat", "longitude": "lon"}


@dataclass(frozen=True, eq=False)
class Grid:
    """A normalised regular-or-not lat/lon grid: lat strictly descending, lon strictly ascending."""

    lat: np.ndarray
    lon: np.ndarray

    def __post_init__(self) -> None:
        lat = np.asarray(self.lat, dtype=np.float64)
        lon = np.asarray(self.lon, dtype=np.float64)
        if lat.ndim != 1 or lon.ndim != 1 or lat.size < 2 or lon.size < 2:
            raise GridError(f"grid needs 1-D lat/lon of length >= 2, got {lat.shape} {lon.shape}")
        if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
            raise GridError("grid coordinates contain non-finite values")
        if not np.all(np.diff(lat) < 0):
            raise GridError("grid latitude must be strictly descending (90 -> -90)")
        if not np.all(np.diff(lon) > 0):
            raise GridError("grid longitude must be strictly ascending")
        if lat[0] > 90 + 1e-6 or lat[-1] < -90 - 1e-6:
            raise GridError(f"latitudes outside [-90, 90]: {lat[0]} .. {lat[-1]}")
        if lon[0] < -1e-9 or lon[-1] >= 360:
            raise GridError(f"longitudes outside [0, 360): {lon[0]} .. {lon[-1]}")
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "_key", lat.tobytes() + b"|" + lon.tobytes())

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.lat.size), int(self.lon.size))

    @property
    def wraps(self) -> bool:
        """True if the longitudes go round the globe (the seam gap is no wider than a step)."""
        steps = np.diff(self.lon)
        seam = 360.0 - (self.lon[-1] - self.lon[0])
        return bool(seam <= steps.max() * (1 + 1e-6) + 1e-9)

    def same_as(self, other: Grid, tol: float = 1e-9) -> bool:
        return (
            self.shape == other.shape
            and bool(np.allclose(self.lat, other.lat, rtol=0, atol=tol))
            and bool(np.allclose(self.lon, other.lon, rtol=0, atol=tol))
        )

    def key(self) -> bytes:
        """A hashable identity for caching plans per grid pair (computed once)."""
        key: bytes = self.__dict__["_key"]
        return key


def regular_grid(resolution: float) -> Grid:
    """The global regular grid of a resolution: 90 -> -90 and 0 -> 360 - resolution."""
    n_lat = round(180.0 / resolution) + 1
    n_lon = round(360.0 / resolution)
    if abs((n_lat - 1) * resolution - 180.0) > 1e-6 or abs(n_lon * resolution - 360.0) > 1e-6:
        raise GridError(f"resolution {resolution} does not divide 180 and 360")
    lat = 90.0 - resolution * np.arange(n_lat)
    lon = resolution * np.arange(n_lon)
    return Grid(lat=lat, lon=lon)


@dataclass(frozen=True, eq=False)
class GridOrientation:
    """How a store's raw (lat, lon) axes map onto the normalised grid.

    normalised[i, j] = raw[lat_index(i), lon_order[j]] with lat_index(i) = n - 1 - i when
    `flip_lat`, else i; `lon_order` is None when the longitudes are already in order.
    """

    flip_lat: bool
    lon_order: np.ndarray | None
    lon: np.ndarray
    """The normalised longitudes, in [0, 360) ascending."""

    def apply(self, plane: np.ndarray) -> np.ndarray:
        """A raw (lat, lon) plane in normalised orientation (a view when nothing moves)."""
        if self.flip_lat:
            plane = plane[::-1]
        if self.lon_order is not None:
            plane = np.take(plane, self.lon_order, axis=1)
        return plane


def grid_orientation(lat: np.ndarray, lon: np.ndarray) -> GridOrientation:
    """How to normalise raw 1-D coordinates (see `normalise_grid`); GridError if impossible."""
    lat = np.asarray(lat, dtype=np.float64)
    if lat.size >= 2 and np.all(np.diff(lat) > 0):
        flip = True
    elif np.all(np.diff(lat) < 0):
        flip = False
    else:
        raise GridError("latitude is neither strictly ascending nor strictly descending")
    lon = np.asarray(lon, dtype=np.float64)
    wrapped = np.mod(lon, 360.0)
    wrapped[np.isclose(wrapped, 360.0, rtol=0, atol=1e-9)] = 0.0
    order = np.argsort(wrapped, kind="stable")
    if np.any(np.diff(wrapped[order]) <= 0):
        raise GridError("longitudes repeat after mapping onto [0, 360) (e.g. both -180 and 180)")
    in_order = np.array_equal(order, np.arange(order.size))
    return GridOrientation(
        flip_lat=flip, lon_order=None if in_order else order, lon=wrapped[order]
    )


def _check_coordinates(ds: xr.Dataset) -> xr.Dataset:
    renames = {old: new for old, new in _RENAMES.items() if old in ds.variables or old in ds.dims}
    clash = [new for new in renames.values() if new in ds.variables or new in ds.dims]
    if clash:
        raise GridError(f"dataset has both long and short coordinate names: {clash}")
    if renames:
        ds = ds.rename(renames)
    for name in ("lat", "lon"):
        if name not in ds.coords:
            raise GridError(f"dataset has no '{name}' (or long-name) coordinate")
        if ds[name].ndim != 1:
            raise GridError(f"coordinate '{name}' must be 1-D, got dims {ds[name].dims}")
    return ds


def normalised_name(dim: str) -> str:
    """The dimension name after normalisation (latitude -> lat, longitude -> lon)."""
    return _RENAMES.get(dim, dim)


def raw_orientation(ds: xr.Dataset) -> GridOrientation:
    """The orientation of a dataset as stored (before `normalise_grid`)."""
    ds = _check_coordinates(ds)
    return grid_orientation(np.asarray(ds["lat"].values), np.asarray(ds["lon"].values))


def normalise_grid(ds: xr.Dataset) -> xr.Dataset:
    """Rename to lat/lon, flip ascending latitude, map longitude onto [0, 360) ascending."""
    ds = _check_coordinates(ds)
    lon = np.asarray(ds["lon"].values, dtype=np.float64)
    orientation = grid_orientation(np.asarray(ds["lat"].values), lon)
    if orientation.flip_lat:
        ds = ds.isel(lat=slice(None, None, -1))
    if orientation.lon_order is not None:
        ds = ds.isel(lon=orientation.lon_order)
    reordered = lon if orientation.lon_order is None else lon[orientation.lon_order]
    if not np.array_equal(orientation.lon, reordered):
        ds = ds.assign_coords(lon=("lon", orientation.lon, ds["lon"].attrs))
    return ds


def grid_of(ds: xr.Dataset) -> Grid:
    """The `Grid` of an already normalised dataset."""
    return Grid(lat=np.asarray(ds["lat"].values), lon=np.asarray(ds["lon"].values))
