"""ERA5-stage data checks, edge salvage, climatology fill and selection, lead availability."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gaia.tasks.weather.data.availability import lead_available_at, lead_is_available
from gaia.tasks.weather.data.checks import (
    CheckConfig,
    canonical_units,
    check_levels_exact,
    check_shape,
    check_time_exact,
    check_units,
    check_values,
    check_variables_present,
    fill_from_climatology,
    repair_field,
    salvage_edges,
)
from gaia.tasks.weather.data.climatology import Climatology, climatology_slot
from gaia.tasks.weather.data.errors import CheckKind, ClimatologyError, DataCheckError
from gaia.tasks.weather.data.grid import regular_grid
from gaia.tasks.weather.data.stores import ArraySpec, PlaneStoreWriter


def _kind(error: pytest.ExceptionInfo[DataCheckError]) -> CheckKind:
    return error.value.kind


def test_missing_variable_is_named() -> None:
    check_variables_present(["2t", "z"], ["z"])
    with pytest.raises(DataCheckError, match="10v") as caught:
        check_variables_present(["2t", "10u"], ["2t", "10u", "10v"])
    assert _kind(caught) is CheckKind.MISSING_VARIABLE and caught.value.variable == "10v"


def test_units_match_in_any_common_spelling_missing_allowed_q_unchecked() -> None:
    assert canonical_units("m**2 s**-2") == "m2 s-2"
    assert canonical_units("m s**-1") == "m s-1"
    assert canonical_units("kelvin") == "K"
    check_units({"2t": "K", "z": "m**2 s**-2", "u": "m/s", "msl": None, "q": "g/kg"})
    with pytest.raises(DataCheckError, match="'m'") as caught:
        check_units({"z": "m"})
    assert _kind(caught) is CheckKind.UNITS and caught.value.variable == "z"
    with pytest.raises(DataCheckError, match="degC"):
        check_units({"2t": "degC"})
    with pytest.raises(DataCheckError, match="hPa"):
        check_units({"msl": "hPa"})


def test_times_and_levels_must_be_exact() -> None:
    times = np.array(["2026-10-02T00", "2026-10-03T00"], dtype="datetime64[ns]")
    assert check_time_exact(times, datetime(2026, 10, 3, tzinfo=UTC), what="forecast") == 1
    with pytest.raises(DataCheckError) as caught:
        check_time_exact(times, datetime(2026, 10, 3, 1, tzinfo=UTC), what="forecast")
    assert _kind(caught) is CheckKind.TIME
    assert check_levels_exact(np.array([500, 850]), [850], what="forecast") == {850: 1}
    with pytest.raises(DataCheckError, match="925") as level:
        check_levels_exact(np.array([500, 850]), [500, 925], what="forecast")
    assert _kind(level) is CheckKind.LEVEL and level.value.level == 925


def test_shape_check() -> None:
    check_shape(np.zeros((3, 4)), (3, 4), "t", 850)
    with pytest.raises(DataCheckError, match=r"t@850 has shape \(3, 5\)") as caught:
        check_shape(np.zeros((3, 5)), (3, 4), "t", 850)
    assert _kind(caught) is CheckKind.SHAPE


def test_value_checks_manipulation_and_coverage() -> None:
    config = CheckConfig()
    field = np.ones((100, 100))
    assert check_values(field, config, "t", 500) == 1.0
    huge = field.copy()
    huge[3, 3] = 2e12
    with pytest.raises(DataCheckError, match="1e\\+12") as caught:
        check_values(huge, config, "t", 500)
    assert _kind(caught) is CheckKind.MANIPULATION
    infinite = field.copy()
    infinite[0, 0] = -np.inf
    with pytest.raises(DataCheckError) as caught:
        check_values(infinite, config, "t", 500)
    assert _kind(caught) is CheckKind.MANIPULATION
    sparse = np.full((100, 100), np.nan)
    sparse[:9] = 1.0  # coverage 0.09 < 0.1
    with pytest.raises(DataCheckError, match=r"0\.0900") as caught:
        check_values(sparse, config, "2t", None)
    assert _kind(caught) is CheckKind.MANIPULATION
    holes = field.copy()
    holes.flat[:16] = np.nan  # coverage 0.9984 < 0.9985
    with pytest.raises(DataCheckError, match=r"0\.998400") as caught:
        check_values(holes, config, "2t", None)
    assert _kind(caught) is CheckKind.COVERAGE
    holes.flat[:15] = 1.0
    assert check_values(holes, config, "2t", None) == pytest.approx(0.9999)


def test_value_checks_find_huge_values_on_either_side_and_beside_nans() -> None:
    config = CheckConfig()
    field = np.full((50, 50), 280.0, np.float32)
    field[2, 2] = 9e11  # large but allowed
    assert check_values(field, config, "t", 850) == 1.0
    low = field.copy()
    low[1, 1] = -3e12
    with pytest.raises(DataCheckError, match=r"t@850 has 1 value\(s\)") as caught:
        check_values(low, config, "t", 850)
    assert _kind(caught) is CheckKind.MANIPULATION
    mixed = field.copy()
    mixed[0, :2] = np.nan
    mixed[5, 5] = 2e12
    mixed[6, 6] = np.inf
    with pytest.raises(DataCheckError, match=r"has 2 value\(s\)"):
        check_values(mixed, config, "t", 850)


def test_edge_salvage_copies_from_the_adjacent_interior() -> None:
    field = np.arange(30, dtype=np.float64).reshape(5, 6)
    expected = field.copy()
    field[-1, :] = np.nan  # missing bottom row
    field[2, 0] = np.nan  # a hole on the left border
    field[0, -1] = np.nan  # a corner
    field[2, 2] = np.nan  # an interior hole: not salvaged
    count = salvage_edges(field)
    assert count == 6 + 1 + 1
    np.testing.assert_array_equal(field[-1, :], expected[-2, :])
    assert field[2, 0] == expected[2, 1]
    assert field[0, -1] == expected[1, -1]
    assert np.isnan(field[2, 2])


def test_fill_from_climatology_counts_points() -> None:
    field = np.array([[1.0, np.nan], [np.inf, 4.0]])
    clim = np.array([[10.0, 20.0], [30.0, 40.0]])
    assert fill_from_climatology(field, clim) == 2
    np.testing.assert_array_equal(field, [[1.0, 20.0], [30.0, 4.0]])


def test_repair_field_salvages_then_checks_then_fills() -> None:
    clim = np.full((50, 40), 7.0)
    field = np.ones((50, 40))
    field[-1, :] = np.nan  # 40 border points: 2% of the field, rescued by salvage
    field[10, 10] = np.nan  # one interior point: filled from climatology
    repair = repair_field(field, clim, CheckConfig(), "t", 500, checked=True)
    assert (repair.salvaged_points, repair.filled_points) == (40, 1)
    assert field[10, 10] == 7.0 and np.isfinite(field).all()
    broken = np.ones((50, 40))
    broken[-1, :] = np.nan
    with pytest.raises(DataCheckError) as caught:
        repair_field(broken, clim, CheckConfig(edge_salvage=False), "t", 500, checked=True)
    assert _kind(caught) is CheckKind.COVERAGE
    day1 = np.ones((50, 40))
    day1[-1, :] = np.nan
    day1[5, 5] = np.nan
    unchecked = repair_field(day1, clim, CheckConfig(), "t", 500, checked=False)
    assert unchecked.filled_points == 0 and np.isnan(day1[5, 5])


def test_climatology_slot_floors_the_hour_to_six() -> None:
    assert climatology_slot(datetime(2026, 10, 1, 0, tzinfo=UTC)) == (274, 0)
    assert climatology_slot(datetime(2026, 10, 1, 17, 59, tzinfo=UTC)) == (274, 12)
    assert climatology_slot(datetime(2024, 12, 31, 23, tzinfo=UTC)) == (366, 18)


@pytest.fixture
def climatology(tmp_path: Path) -> Climatology:
    """A WB2-layout store: ascending latitude, long names, values encoding day/hour/level."""
    grid = regular_grid(30.0)
    coords = {"dayofyear": np.array([274, 275]), "hour": np.array([0, 6, 12, 18]),
              "level": np.array([500, 850]), "latitude": grid.lat[::-1].copy(),
              "longitude": grid.lon}
    arrays = {"temperature": ArraySpec(("dayofyear", "hour", "level", "latitude", "longitude"),
                                       "K"),
              "2m_temperature": ArraySpec(("dayofyear", "hour", "latitude", "longitude"), "K")}
    path = tmp_path / "clim.zarr"
    lat_ascending = grid.lat[::-1][:, None] * np.ones(grid.lon.size)
    with PlaneStoreWriter(path, coords, arrays) as writer:
        for d, day in enumerate((274, 275)):
            for h, hour in enumerate((0, 6, 12, 18)):
                for k, level in enumerate((500, 850)):
                    value = day * 1e4 + hour * 100 + level / 10
                    writer.write("temperature", (d, h, k), value + lat_ascending)
                writer.write("2m_temperature", (d, h), day * 1e4 + hour * 100 + lat_ascending)
    return Climatology.open(path)


def test_climatology_selects_day_hour_nearest_level_and_normalises_grid(
    climatology: Climatology,
) -> None:
    valid = datetime(2026, 10, 2, 13, tzinfo=UTC)  # day 275, hour slot 12
    plane = climatology.plane("t", 700, valid)  # 850 is nearer (150 hPa) than 500 (200 hPa)
    assert plane[0, 0] == pytest.approx(275 * 1e4 + 12 * 100 + 85 + 90.0)
    plane = climatology.plane("t", 600, valid)  # nearest is 500
    assert plane[0, 0] == pytest.approx(275 * 1e4 + 1200 + 50 + 90.0)
    assert plane[-1, 0] == pytest.approx(275 * 1e4 + 1200 + 50 - 90.0)  # lat flipped to 90 -> -90
    surface = climatology.plane("2t", None, valid)
    assert surface[0, 3] == pytest.approx(275 * 1e4 + 1200 + 90.0)


def test_climatology_regrids_bilinearly_onto_the_truth_grid(climatology: Climatology) -> None:
    valid = datetime(2026, 10, 1, 0, tzinfo=UTC)
    target = regular_grid(15.0)
    out = climatology.on_grid("2t", None, valid, target)
    assert out.shape == target.shape
    # The field is linear in latitude, so bilinear interpolation is exact.
    np.testing.assert_allclose(out[:, 0], 274 * 1e4 + target.lat, rtol=0, atol=1e-6)


def test_climatology_errors_are_clear(climatology: Climatology) -> None:
    with pytest.raises(ClimatologyError, match="dayofyear 1 "):
        climatology.plane("t", 500, datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ClimatologyError, match="'msl'"):
        climatology.plane("msl", None, datetime(2026, 10, 1, tzinfo=UTC))
    with pytest.raises(ClimatologyError, match="level is required"):
        climatology.plane("t", None, datetime(2026, 10, 1, tzinfo=UTC))


def test_lead_availability_is_init_plus_lead_plus_five_days_six_hours() -> None:
    init = datetime(2026, 10, 1, tzinfo=UTC)
    assert lead_available_at(init, 24) == datetime(2026, 10, 7, 6, tzinfo=UTC)
    assert lead_available_at(datetime(2026, 10, 1), 240) == datetime(2026, 10, 16, 6, tzinfo=UTC)
    assert not lead_is_available(init, 24, datetime(2026, 10, 7, 5, 59, tzinfo=UTC))
    assert lead_is_available(init, 24, datetime(2026, 10, 7, 6))
