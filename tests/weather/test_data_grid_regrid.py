"""Grid normalisation, bilinear regridding, time and level matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import xarray as xr

from gaia.tasks.weather.data.errors import GridError, LevelMatchError, TimeMatchError
from gaia.tasks.weather.data.grid import Grid, grid_of, normalise_grid, regular_grid
from gaia.tasks.weather.data.regrid import BilinearPlan, PlanCache, match_level, match_time


def _dataset(
    lat: np.ndarray, lon: np.ndarray, names: tuple[str, str] = ("lat", "lon")
) -> xr.Dataset:
    values = np.add.outer(lat * 1000.0, lon)  # value encodes (lat, lon) exactly
    return xr.Dataset(
        {"f": ((names[0], names[1]), values)}, coords={names[0]: lat, names[1]: lon}
    )


def test_normalise_flips_ascending_latitude_and_renames_long_names() -> None:
    ds = _dataset(np.array([-90.0, 0.0, 90.0]), np.array([0.0, 120.0, 240.0]),
                  ("latitude", "longitude"))
    out = normalise_grid(ds)
    assert list(out.dims) == ["lat", "lon"]
    assert out["lat"].values.tolist() == [90.0, 0.0, -90.0]
    assert out["f"].sel(lat=90.0, lon=120.0).item() == 90.0 * 1000 + 120.0


def test_normalise_maps_signed_longitudes_onto_0_360_sorted() -> None:
    lon = np.array([-180.0, -90.0, 0.0, 90.0])
    out = normalise_grid(_dataset(np.array([90.0, -90.0]), lon))
    assert out["lon"].values.tolist() == [0.0, 90.0, 180.0, 270.0]
    # Data moved with its coordinate: the value at 270 came from -90.
    assert out["f"].sel(lat=90.0, lon=270.0).item() == 90.0 * 1000 - 90.0
    assert out["f"].sel(lat=90.0, lon=180.0).item() == 90.0 * 1000 - 180.0


def test_normalise_leaves_a_normal_grid_alone_and_any_resolution_works() -> None:
    grid = regular_grid(0.25)
    assert grid.shape == (721, 1440)
    assert regular_grid(1.5).shape == (121, 240)
    ds = _dataset(grid.lat[:5], grid.lon[:7])
    out = normalise_grid(ds)
    assert np.array_equal(out["lat"].values, grid.lat[:5])
    assert np.array_equal(out["lon"].values, grid.lon[:7])


def test_normalise_refuses_duplicate_longitudes_and_non_monotonic_latitude() -> None:
    with pytest.raises(GridError, match="repeat"):
        normalise_grid(_dataset(np.array([90.0, -90.0]), np.array([-180.0, 0.0, 180.0])))
    with pytest.raises(GridError, match="neither"):
        normalise_grid(_dataset(np.array([0.0, 90.0, -90.0]), np.array([0.0, 90.0])))
    with pytest.raises(GridError, match="no 'lat'"):
        normalise_grid(xr.Dataset({"f": (("y", "x"), np.zeros((2, 2)))}))


def test_regular_grid_refuses_a_resolution_that_does_not_divide_the_globe() -> None:
    with pytest.raises(GridError):
        regular_grid(0.7)


def test_bilinear_matches_hand_computed_values() -> None:
    source = Grid(lat=np.array([10.0, 0.0]), lon=np.array([0.0, 10.0, 20.0]))
    field = np.array([[1.0, 2.0, 4.0], [3.0, 5.0, 9.0]])
    target = Grid(lat=np.array([7.5, 2.5]), lon=np.array([5.0, 15.0]))
    out = BilinearPlan.between(source, target).apply(field)
    # lat 7.5 is 0.25 of the way from 10 to 0; lon 5 halfway between 0 and 10.
    top = 0.75 * 1.0 + 0.25 * 3.0, 0.75 * 2.0 + 0.25 * 5.0, 0.75 * 4.0 + 0.25 * 9.0
    bottom = 0.25 * 1.0 + 0.75 * 3.0, 0.25 * 2.0 + 0.75 * 5.0, 0.25 * 4.0 + 0.75 * 9.0
    expected = np.array([
        [(top[0] + top[1]) / 2, (top[1] + top[2]) / 2],
        [(bottom[0] + bottom[1]) / 2, (bottom[1] + bottom[2]) / 2],
    ])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_bilinear_is_exact_for_a_linear_field_on_a_finer_grid() -> None:
    source = regular_grid(3.0)
    target = regular_grid(1.5)
    lat2d = source.lat[:, None] * np.ones(source.lon.size)[None, :]
    # Linear in lat, and in lon away from the seam (target lon < 357 stays inside the source).
    field = 2.0 * lat2d + 0.5 * source.lon[None, :]
    out = BilinearPlan.between(source, target).apply(field)
    inside = target.lon <= source.lon[-1]
    expected = 2.0 * target.lat[:, None] + 0.5 * target.lon[None, :]
    np.testing.assert_allclose(out[:, inside], expected[:, inside], atol=1e-9)


def test_bilinear_identity_on_equal_grids_keeps_values_and_nans() -> None:
    grid = regular_grid(3.0)
    rng = np.random.default_rng(0)
    field = rng.standard_normal(grid.shape).astype(np.float32)
    field[5, 7] = np.nan
    plan = BilinearPlan.between(grid, Grid(lat=grid.lat.copy(), lon=grid.lon.copy()))
    out = plan.apply(field)
    assert plan.identity
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, field)


def test_exact_hits_do_not_pick_up_a_nan_neighbour() -> None:
    source = Grid(lat=np.array([10.0, 5.0, 0.0]), lon=np.array([0.0, 10.0, 20.0]))
    field = np.arange(9.0).reshape(3, 3)
    field[1, 2] = np.nan
    target = Grid(lat=np.array([10.0, 5.0, 2.5]), lon=np.array([10.0, 15.0]))
    out = BilinearPlan.between(source, target).apply(field)
    assert out[0, 0] == field[0, 1]  # exact node, no NaN reached
    assert out[1, 0] == field[1, 1]  # exact node next to the NaN
    assert np.isnan(out[1, 1])  # halfway toward the NaN: NaN
    assert np.isnan(out[2, 1])


def test_points_outside_the_source_become_nan() -> None:
    source = Grid(lat=np.array([60.0, 0.0]), lon=np.array([10.0, 20.0, 30.0]))  # not global
    target = Grid(lat=np.array([70.0, 30.0]), lon=np.array([5.0, 15.0, 35.0]))
    out = BilinearPlan.between(source, target).apply(np.ones((2, 3)))
    assert np.isnan(out[0]).all()  # lat 70 is north of the source
    assert np.isnan(out[1, 0]) and np.isnan(out[1, 2])  # lon 5 and 35 outside a regional grid
    assert out[1, 1] == 1.0


def test_global_source_wraps_around_the_seam() -> None:
    source = Grid(lat=np.array([10.0, 0.0]), lon=np.arange(0.0, 360.0, 90.0))
    field = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    target = Grid(lat=np.array([10.0, 0.0]), lon=np.array([45.0, 315.0, 350.0]))
    out = BilinearPlan.between(source, target).apply(field)
    # 315 is halfway between 270 (3.0) and 360 == 0 (0.0); 350 is 8/9 of the way.
    np.testing.assert_allclose(out[0], [0.5, 1.5, 3.0 + (0.0 - 3.0) * 80 / 90])


def test_truth_grid_cropped_source_leaves_a_nan_border_row() -> None:
    truth = regular_grid(3.0)
    source = Grid(lat=truth.lat[:-1], lon=truth.lon)  # a model grid without the south pole
    out = BilinearPlan.between(source, truth).apply(np.ones(source.shape))
    assert np.isnan(out[-1]).all()
    assert np.isfinite(out[:-1]).all()


def test_plan_cache_reuses_plans_and_checks_shapes() -> None:
    cache = PlanCache()
    a, b = regular_grid(3.0), regular_grid(1.5)
    assert cache.plan(a, b) is cache.plan(a, b)
    with pytest.raises(GridError, match="shape"):
        cache.plan(a, b).apply(np.ones(b.shape))


def test_grid_of_reads_a_normalised_dataset() -> None:
    ds = normalise_grid(_dataset(np.array([-45.0, 45.0]), np.array([-90.0, 90.0])))
    grid = grid_of(ds)
    assert grid.lat.tolist() == [45.0, -45.0] and grid.lon.tolist() == [90.0, 270.0]


TIMES = np.array(["2026-10-01T00", "2026-10-01T06", "2026-10-01T12"], dtype="datetime64[ns]")


def test_match_time_nearest_within_tolerance() -> None:
    wanted = datetime(2026, 10, 1, 7, tzinfo=UTC)
    assert match_time(TIMES, wanted, timedelta(hours=3)) == 1
    assert match_time(TIMES, datetime(2026, 10, 1, 12), timedelta(0)) == 2
    # A tie goes to the earlier time.
    assert match_time(TIMES, datetime(2026, 10, 1, 3, tzinfo=UTC), timedelta(hours=3)) == 0


def test_match_time_errors_name_the_nearest_time() -> None:
    with pytest.raises(TimeMatchError, match=r"nearest is 2026-10-01T12:00:00 \(4.00 h away\)"):
        match_time(TIMES, datetime(2026, 10, 1, 16, tzinfo=UTC), timedelta(hours=3),
                   what="reference")
    with pytest.raises(TimeMatchError, match="no times"):
        match_time(np.array([], dtype="datetime64[ns]"), datetime(2026, 1, 1), timedelta(1))


def test_match_level_within_tolerance_and_exact() -> None:
    levels = np.array([500, 850, 1000])
    assert match_level(levels, 505, 10.0) == 0
    assert match_level(levels, 850, 0.0) == 1
    with pytest.raises(LevelMatchError, match="nearest is 500 hPa"):
        match_level(levels, 520, 10.0)
    with pytest.raises(LevelMatchError):
        match_level(levels, 925, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilinear_equals_the_written_out_expression_bit_for_bit(dtype: type) -> None:
    """The in-place evaluation keeps the roundings of lo * (1 - w) + hi * w, lat then lon."""
    source, target = regular_grid(3.0), regular_grid(1.25)
    plan = BilinearPlan.between(source, target)
    field = np.random.default_rng(4).standard_normal(source.shape).astype(dtype) * 300 + 5e4
    field[7, 11] = np.nan
    wy = plan.lat.weight.astype(dtype)[:, None]
    rows = field[plan.lat.lo] * (1 - wy) + field[plan.lat.hi] * wy
    wx = plan.lon.weight.astype(dtype)[None, :]
    written_out = rows[:, plan.lon.lo] * (1 - wx) + rows[:, plan.lon.hi] * wx
    out = plan.apply(field)
    assert out.dtype == dtype and out is not field
    np.testing.assert_array_equal(out, written_out)
    assert 0 < np.isnan(out).sum() < 0.01 * out.size  # only around the one NaN
    assert plan.apply(field) is not out  # a new array each time (the caller may repair it)
