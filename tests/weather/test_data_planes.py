"""Plane reads: direct chunk decoding equals xarray's reading, verification, and its limits."""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr

from gaia.tasks.weather.data.errors import (
    CheckKind,
    ChunkHashMismatch,
    DataCheckError,
    StoreError,
)
from gaia.tasks.weather.data.grid import grid_orientation, normalise_grid
from gaia.tasks.weather.data.manifest import ChunkVerifier, build_manifest
from gaia.tasks.weather.data.planes import PlaneStore
from gaia.tasks.weather.data.stores import ArraySpec, PlaneStoreWriter, open_dataset

LAT = np.array([60.0, 20.0, -20.0, -60.0])
LON = np.arange(0.0, 360.0, 45.0)
SIGNED_LON = np.arange(-180.0, 180.0, 45.0)
BLOSC = numcodecs.Blosc(cname="lz4")


def _values(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    values.flat[::7] = np.nan
    values.flat[3::11] = 0.0  # exact zeros: masked by xarray when the fill value is 0
    return values


def _write(
    path: Path,
    *,
    lat: np.ndarray = LAT,
    lon: np.ndarray = LON,
    grid_dims: tuple[str, str] = ("lat", "lon"),
    chunks: tuple[int, ...] | None = None,
    dtype: str = "<f4",
    compressor: numcodecs.abc.Codec | None = BLOSC,
    filters: list[numcodecs.abc.Codec] | None = None,
    fill_value: float = np.nan,
    order: str = "C",
    attributes: dict[str, object] | None = None,
    zarr_format: int = 2,
    consolidated: bool = True,
) -> np.ndarray:
    """A store with coordinates time (2), level (3), the grid, and one variable "t"."""
    group = zarr.open_group(store=str(path), mode="w", zarr_format=zarr_format)  # type: ignore[arg-type]
    sizes = {"time": 2, "level": 3, "lat": lat.size, "lon": lon.size,
             "latitude": lat.size, "longitude": lon.size}
    coords = {"time": np.arange(2), "level": np.array([500, 700, 850]),
              grid_dims[0] if "lat" in grid_dims[0] else grid_dims[1]: lat,
              grid_dims[1] if "lon" in grid_dims[1] else grid_dims[0]: lon}
    for name, values in coords.items():
        naming: dict[str, object] = (
            {"dimension_names": [name]} if zarr_format == 3
            else {"attributes": {"_ARRAY_DIMENSIONS": [name]}}
        )
        array = group.create_array(name, shape=values.shape, dtype=values.dtype,
                                   fill_value=None, **naming)  # type: ignore[arg-type]
        array[...] = values
    dims = ("time", "level", *grid_dims)
    shape = tuple(sizes[dim] for dim in dims)
    attrs: dict[str, object] = dict(attributes or {})
    extra: dict[str, object] = {}
    if zarr_format == 3:
        extra["dimension_names"] = list(dims)
    else:
        attrs["_ARRAY_DIMENSIONS"] = list(dims)
        extra.update(compressor=compressor, filters=filters, order=order)
    data = group.create_array(
        "t", shape=shape, chunks=chunks or (1, 1, *shape[2:]), dtype=dtype,
        fill_value=fill_value, attributes=attrs, **extra,  # type: ignore[arg-type]
    )
    values = _values(shape, dtype)
    data[...] = values
    if consolidated:
        zarr.consolidate_metadata(str(path), zarr_format=zarr_format)  # type: ignore[arg-type]
    return values


def _expected(path: Path, index: dict[str, int]) -> np.ndarray:
    """What the loader read before direct decoding: xarray, grid normalised."""
    ds = open_dataset(path)
    try:
        return np.asarray(ds["t"].isel(index).transpose("lat", "lon").values)
    finally:
        ds.close()


LAYOUTS: dict[str, tuple[dict[str, object], bool]] = {
    "blosc, plane chunks": ({}, True),
    "ascending latitude, signed longitudes, long names": (
        {"lat": LAT[::-1].copy(), "lon": SIGNED_LON, "grid_dims": ("latitude", "longitude")},
        True,
    ),
    "longitude before latitude, Fortran order": (
        {"grid_dims": ("lon", "lat"), "order": "F"}, True,
    ),
    "zstd": ({"compressor": numcodecs.Zstd(level=1)}, True),
    "zlib": ({"compressor": numcodecs.Zlib(level=1)}, True),
    "uncompressed": ({"compressor": None}, True),
    "big-endian float64": ({"dtype": ">f8"}, True),
    "separate metadata files": ({"consolidated": False}, True),
    "planes split over chunks": ({"chunks": (1, 1, 2, 8)}, False),
    "delta filter": ({"filters": [numcodecs.Delta(dtype="<f4")]}, False),
    "fill value 0": ({"fill_value": 0.0}, False),
    "scale factor": ({"attributes": {"scale_factor": 0.5}}, False),
    "Zarr format 3": ({"zarr_format": 3}, False),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_reads_exactly_what_xarray_reads(tmp_path: Path, layout: str) -> None:
    options, direct = LAYOUTS[layout]
    path = tmp_path / "s.zarr"
    _write(path, **options)  # type: ignore[arg-type]
    store = PlaneStore.open(path, label="truth")
    try:
        reader = store.reader("t")
        assert reader.direct is direct, reader.fallback_reason
        assert reader.dims == ("time", "level")
        for index in ({"time": 0, "level": 0}, {"time": 1, "level": 2}):
            plane = reader.read(index)
            expected = _expected(path, index)
            assert plane.dtype == expected.dtype and plane.dtype.isnative
            np.testing.assert_array_equal(plane, expected)
            assert plane.shape == (4, 8) and plane.flags.c_contiguous
            # xarray masks the fill value: the stored zeros come back as NaN, and so here
            assert (plane == 0).any() is not (layout == "fill value 0")
    finally:
        store.close()


def test_a_netcdf_store_reads_through_xarray(tmp_path: Path) -> None:
    path = tmp_path / "s.nc"
    values = _values((2, 3, 4, 8), "<f4")
    xr.Dataset(
        {"t": (("time", "level", "latitude", "longitude"), values)},
        coords={"time": np.arange(2), "level": [500, 700, 850], "latitude": LAT[::-1].copy(),
                "longitude": SIGNED_LON},
    ).to_netcdf(path)
    store = PlaneStore.open(path, label="truth")
    try:
        assert not store.reader("t").direct
        np.testing.assert_array_equal(store.plane("t", {"time": 1, "level": 1}),
                                      _expected(path, {"time": 1, "level": 1}))
    finally:
        store.close()


def test_reads_are_fresh_writable_arrays_and_an_absent_chunk_reads_as_fill(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.zarr"
    _write(path)
    (path / "t" / "1.2.0.0").unlink()
    store = PlaneStore.open(path, label="truth")
    try:
        index = {"time": 0, "level": 1}
        first = store.plane("t", index)
        assert first.flags.writeable and first.flags.c_contiguous
        first[...] = 1.0
        assert not np.array_equal(store.plane("t", index), first)
        absent = store.plane("t", {"time": 1, "level": 2})
        assert store.reader("t").direct and np.isnan(absent).all()
        np.testing.assert_array_equal(absent, _expected(path, {"time": 1, "level": 2}))
        with pytest.raises(StoreError, match=r"\['time', 'level'\]"):
            store.plane("t", {"time": 0})
        with pytest.raises(IndexError, match="level index 3"):
            store.plane("t", {"time": 0, "level": 3})
        with pytest.raises(StoreError, match="no variable 'q'"):
            store.reader("q")
        np.testing.assert_array_equal(store.coord("level"), [500, 700, 850])
    finally:
        store.close()


def test_grid_orientation_reproduces_normalise_grid() -> None:
    lat, lon = LAT[::-1].copy(), np.array([90.0, -90.0, 0.0, 180.0 - 1e-12, -135.0])
    raw = np.add.outer(lat * 1000.0, lon)
    ds = normalise_grid(xr.Dataset({"f": (("lat", "lon"), raw)}, coords={"lat": lat, "lon": lon}))
    orientation = grid_orientation(lat, lon)
    assert orientation.flip_lat and orientation.lon_order is not None
    np.testing.assert_array_equal(orientation.apply(raw), ds["f"].values)
    np.testing.assert_array_equal(orientation.lon, ds["lon"].values)


def _forecast(path: Path) -> None:
    coords = {"time": np.array(["2026-10-01T12", "2026-10-02"], dtype="datetime64[ns]"),
              "level": np.array([500, 850]), "lat": np.linspace(90.0, -90.0, 5),
              "lon": np.arange(0.0, 360.0, 45.0)}
    arrays = {"z": ArraySpec(("time", "level", "lat", "lon"), "m2 s-2")}
    with PlaneStoreWriter(path, coords, arrays) as writer:
        for step in range(2):
            writer.write("z", (step,), np.arange(80, dtype=np.float32).reshape(2, 5, 8) + step)


def _verified(path: Path) -> PlaneStore:
    verifier = ChunkVerifier(path, build_manifest(path))
    verifier.check_listing()
    return PlaneStore.open_verified(verifier)


def test_a_miners_planes_are_hashed_before_they_are_decoded(tmp_path: Path) -> None:
    path = tmp_path / "forecast.zarr"
    _forecast(path)
    verifier = ChunkVerifier(path, build_manifest(path))
    store = PlaneStore.open_verified(verifier)
    try:
        assert store.reader("z").direct
        before = list(verifier.verified_keys)
        plane = store.plane("z", {"time": 1, "level": 1})
        assert plane[0, 0] == 41.0 and verifier.verified_keys[len(before):] == ["z/1.1.0.0"]
        chunk = path / "z" / "1.0.0.0"
        altered = bytearray(chunk.read_bytes())
        altered[-1] ^= 0x01
        chunk.write_bytes(bytes(altered))
        with pytest.raises(ChunkHashMismatch) as caught:
            store.plane("z", {"time": 1, "level": 0})
        assert caught.value.relpath == "z/1.0.0.0"
    finally:
        store.close()


@pytest.mark.parametrize(
    "content",
    [numcodecs.Blosc(cname="lz4").encode(np.zeros(20, np.float32)), b"not a blosc chunk"],
    ids=["half a plane", "garbage"],
)
def test_a_frozen_chunk_that_is_not_one_plane_fails_clearly(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "forecast.zarr"
    _forecast(path)
    (path / "z" / "0.1.0.0").write_bytes(content)
    store = _verified(path)  # re-frozen: the hash matches, the content is wrong
    try:
        with pytest.raises(DataCheckError, match=r"forecast chunk 'z/0\.1\.0\.0'") as caught:
            store.plane("z", {"time": 0, "level": 1})
        assert caught.value.kind is CheckKind.SHAPE and caught.value.variable == "z"
        assert store.plane("z", {"time": 0, "level": 0})[0, 1] == 1.0
    finally:
        store.close()
    trusted = PlaneStore.open(path, label="truth")
    try:
        with pytest.raises(StoreError, match=r"truth chunk 'z/0\.1\.0\.0'"):
            trusted.plane("z", {"time": 0, "level": 1})
    finally:
        trusted.close()


def test_a_missing_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        PlaneStore.open(tmp_path / "absent.zarr", label="truth")
