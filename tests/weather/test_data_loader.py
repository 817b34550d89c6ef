"""The streaming loader over a small synthetic run (3 deg, one miner of every grade)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import zarr

from gaia.tasks.weather.data.checks import CheckConfig
from gaia.tasks.weather.data.errors import (
    CheckKind,
    ChunkHashMismatch,
    ClaimedHashMismatch,
    DataCheckError,
    UnknownChunkError,
    VerificationError,
)
from gaia.tasks.weather.data.loader import (
    ForecastLoader,
    LoaderConfig,
    Stage,
    estimated_lead_bytes,
    stage_fields,
    stream_leads,
)
from gaia.tasks.weather.data.manifest import build_manifest, write_manifest
from gaia.tasks.weather.data.stores import ArraySpec, PlaneStoreWriter, RunLayout, open_dataset
from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.synth import generate_run
from gaia.tasks.weather.synth.atmosphere import Atmosphere
from gaia.tasks.weather.synth.modes import SphereBasis
from gaia.tasks.weather.variables import (
    ALL_VARIABLES,
    DAY1_VARIABLES,
    LEVELS,
    PRESSURE_VARIABLES,
    VARIABLES,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunLayout:
    return generate_run(tmp_path_factory.mktemp("run") / "r", seed=3, resolution=3.0, miners=9)


def _hotkey(run: RunLayout, grade: str, index: int = 0) -> str:
    miners: dict[str, dict[str, object]] = json.loads(run.expected_json.read_text())["miners"]
    return sorted(k for k, v in miners.items() if v["grade"] == grade)[index]


def _rmse(a: np.ndarray, b: np.ndarray, lat: np.ndarray) -> float:
    weights = np.cos(np.deg2rad(lat))[:, None] * np.ones(a.shape[1])
    return float(np.sqrt(np.sum(weights * (a - b) ** 2) / np.sum(weights)))


def _by_key(fields: list[FieldInputs]) -> dict[tuple[str, int | None], FieldInputs]:
    return {(f.variable, f.level): f for f in fields}


def test_day1_yields_the_five_fields_on_the_truth_grid(run: RunLayout) -> None:
    hotkey = _hotkey(run, "skilful")
    with ForecastLoader(run, hotkey, Stage.DAY1) as loader:
        assert 32 <= loader.spot_checked <= 64
        (lead,) = list(loader.stream())
    assert lead.lead_hours == 12 and lead.skipped == ()
    assert [(f.variable, f.level) for f in lead.fields] == list(DAY1_VARIABLES)
    analysis = open_dataset(run.truth_analysis)
    for field in lead.fields:
        assert field.forecast.shape == field.truth.shape == field.climatology.shape == (61, 120)
        assert field.reference is not None and field.reference.shape == (61, 120)
        assert field.lat[0] == 90.0 and field.lat[-1] == -90.0
        assert np.isfinite(field.climatology).all()
    z500 = _by_key(lead.fields)[("z", 500)]
    stored = analysis["z"].isel(time=0).sel(level=500).values
    np.testing.assert_array_equal(z500.truth, stored)
    assert z500.reference is not None
    assert _rmse(z500.forecast, z500.truth, z500.lat) < _rmse(z500.reference, z500.truth, z500.lat)
    assert _rmse(z500.forecast, z500.truth, z500.lat) < _rmse(
        z500.climatology, z500.truth, z500.lat
    )


def test_era5_streams_one_lead_at_a_time_reading_only_that_leads_chunks(run: RunLayout) -> None:
    hotkey = _hotkey(run, "skilful")
    hours = run.read_info().extra["forecast_hours"]
    assert isinstance(hours, list)
    with ForecastLoader(run, hotkey, Stage.ERA5) as loader:
        stream = loader.stream([24, 48])
        opened = set(loader.verifier.verified_keys)
        first = next(stream)
        read_first = set(loader.verifier.verified_keys) - opened
        second = next(stream)
        read_second = set(loader.verifier.verified_keys) - opened - read_first
        with pytest.raises(StopIteration):
            next(stream)
    assert first.lead_hours == 24 and second.lead_hours == 48
    assert len(read_first) == len(read_second) == 69
    assert {key.split("/")[1].split(".")[0] for key in read_first} == {str(hours.index(24))}
    assert {key.split("/")[1].split(".")[0] for key in read_second} == {str(hours.index(48))}
    assert len(first.fields) == len(stage_fields(Stage.ERA5)) == 4 + 5 * len(LEVELS)
    for field in first.fields:
        assert field.reference is None
        assert np.isfinite(field.forecast).all() and np.isfinite(field.truth).all()
    assert all(r.filled_points == 0 and r.salvaged_points == 0 for r in first.repairs.values())


def test_errors_are_graded_and_grow_with_lead(run: RunLayout) -> None:
    def z500_error(grade: str, lead: int) -> float:
        (fields,) = list(stream_leads(run, _hotkey(run, grade), Stage.ERA5, leads=[lead]))
        z = _by_key(fields.fields)[("z", 500)]
        return _rmse(z.forecast, z.truth, z.lat)

    assert z500_error("skilful", 24) < z500_error("noisy", 24)
    assert z500_error("skilful", 24) < z500_error("skilful", 240)


def test_era5_conventions_are_normalised_on_load(run: RunLayout) -> None:
    hotkey = _hotkey(run, "skilful", index=1)  # the miner writing latitude/longitude, -180..180
    raw = json.loads(run.expected_json.read_text())["miners"][hotkey]
    assert raw["era5_conventions"] is True
    (lead,) = list(stream_leads(run, hotkey, Stage.ERA5, leads=[24]))
    t850 = _by_key(lead.fields)[("t", 850)]
    assert _rmse(t850.forecast, t850.truth, t850.lat) < 0.5 * _rmse(
        t850.climatology, t850.truth, t850.lat
    )


def test_wrong_units_pass_day1_raw_and_fail_the_era5_unit_check(run: RunLayout) -> None:
    hotkey = _hotkey(run, "wrong_units")
    (lead,) = list(stream_leads(run, hotkey, Stage.DAY1))
    fields = _by_key(lead.fields)
    assert np.mean(fields[("z", 500)].forecast) < 1e4 < 4e4 < np.mean(fields[("z", 500)].truth)
    assert np.mean(fields[("2t", None)].forecast) < 100 < 200 < np.mean(fields[("2t", None)].truth)
    with pytest.raises(DataCheckError, match="units") as caught:
        next(stream_leads(run, hotkey, Stage.ERA5))
    assert caught.value.kind is CheckKind.UNITS


def test_nan_border_is_salvaged_by_default_and_fails_coverage_without(run: RunLayout) -> None:
    hotkey = _hotkey(run, "nan_border")
    (lead,) = list(stream_leads(run, hotkey, Stage.ERA5, leads=[24]))
    assert all(np.isfinite(f.forecast).all() for f in lead.fields)
    assert all(r.salvaged_points == 120 for r in lead.repairs.values())
    t = _by_key(lead.fields)[("t", 500)]
    np.testing.assert_array_equal(t.forecast[-1], t.forecast[-2])
    no_salvage = LoaderConfig(checks=CheckConfig(edge_salvage=False))
    with pytest.raises(DataCheckError, match="coverage") as caught:
        list(stream_leads(run, hotkey, Stage.ERA5, leads=[24], config=no_salvage))
    assert caught.value.kind is CheckKind.COVERAGE
    (day1,) = list(stream_leads(run, hotkey, Stage.DAY1, config=no_salvage))
    assert np.isnan(day1.fields[0].forecast[-1]).all()


def test_corrupted_chunks_fail_verification_only_where_read(run: RunLayout) -> None:
    hotkey = _hotkey(run, "corrupted_chunk")
    with pytest.raises(VerificationError):
        list(stream_leads(run, hotkey, Stage.DAY1))
    with ForecastLoader(run, hotkey, Stage.ERA5) as loader:
        with pytest.raises(ChunkHashMismatch) as caught:
            loader.load(24)
        assert caught.value.relpath == "z/1.7.0.0"
        assert len(loader.load(48).fields) == 69


def test_missing_variable_is_skipped_at_day1_and_fails_era5(run: RunLayout) -> None:
    hotkey = _hotkey(run, "missing_variable")
    (lead,) = list(stream_leads(run, hotkey, Stage.DAY1))
    assert [f.variable for f in lead.fields] == ["2t", "msl", "10u", "z"]
    skipped = [(s.variable, s.reason) for s in lead.skipped]
    assert skipped == [("10v", "forecast lacks variable 10v")]
    with pytest.raises(DataCheckError, match="10v") as caught:
        list(stream_leads(run, hotkey, Stage.ERA5))
    assert caught.value.kind is CheckKind.MISSING_VARIABLE


def test_a_lead_outside_the_stage_is_refused(run: RunLayout) -> None:
    with (
        ForecastLoader(run, _hotkey(run, "skilful"), Stage.ERA5) as loader,
        pytest.raises(ValueError, match="not a era5 lead"),
    ):
        loader.load(12)


@pytest.fixture
def small(tmp_path: Path) -> tuple[RunLayout, str]:
    layout = generate_run(tmp_path / "r", seed=5, resolution=6.0, miners=1,
                          forecast_hours=(12, 24))
    return layout, layout.read_info().miners[0].hotkey


def _resign(layout: RunLayout, hotkey: str) -> None:
    """Re-freeze a changed store: new manifest, new claimed hash in run.json."""
    claimed = write_manifest(build_manifest(layout.forecast(hotkey)), layout.manifest(hotkey))
    info = layout.read_info()
    miners = tuple(dataclasses.replace(m, claimed_hash=claimed) if m.hotkey == hotkey else m
                   for m in info.miners)
    layout.write_info(dataclasses.replace(info, miners=miners))


def _overwrite(layout: RunLayout, hotkey: str, name: str, index: tuple[int, ...],
               value: np.ndarray) -> None:
    group = zarr.open_group(store=str(layout.forecast(hotkey)), mode="r+", zarr_format=2)
    array = group[name]
    assert isinstance(array, zarr.Array)
    array[index] = value


def test_a_changed_claimed_hash_fails_verification(small: tuple[RunLayout, str]) -> None:
    layout, hotkey = small
    info = layout.read_info()
    miners = tuple(dataclasses.replace(m, claimed_hash="0" * 64) for m in info.miners)
    layout.write_info(dataclasses.replace(info, miners=miners))
    with pytest.raises(ClaimedHashMismatch):
        ForecastLoader(layout, hotkey, Stage.DAY1)


def test_an_unlisted_file_in_the_store_fails_verification(small: tuple[RunLayout, str]) -> None:
    layout, hotkey = small
    (layout.forecast(hotkey) / "z" / "extra").write_bytes(b"x")
    with pytest.raises(UnknownChunkError, match="z/extra"):
        ForecastLoader(layout, hotkey, Stage.ERA5)


def test_huge_values_are_manipulation(small: tuple[RunLayout, str]) -> None:
    layout, hotkey = small
    plane = np.full((31, 60), 280.0, np.float32)
    plane[4, 4] = 5e12
    _overwrite(layout, hotkey, "t", (1, LEVELS.index(850)), plane)
    _resign(layout, hotkey)
    with pytest.raises(DataCheckError, match=r"t@850.*1e\+12") as caught:
        list(stream_leads(layout, hotkey, Stage.ERA5, leads=[24]))
    assert caught.value.kind is CheckKind.MANIPULATION and caught.value.level == 850


def test_interior_holes_fail_coverage_and_sparse_fields_are_manipulation(
    small: tuple[RunLayout, str],
) -> None:
    layout, hotkey = small
    plane = np.full((31, 60), 101325.0, np.float32)
    plane[10:12, 10:20] = np.nan  # 20 of 1860 points: coverage 0.989
    _overwrite(layout, hotkey, "msl", (1,), plane)
    _resign(layout, hotkey)
    with pytest.raises(DataCheckError, match="msl finite coverage") as caught:
        list(stream_leads(layout, hotkey, Stage.ERA5, leads=[24]))
    assert caught.value.kind is CheckKind.COVERAGE
    plane[1:-1] = np.nan  # only the top and bottom rows remain: coverage 2/31 < 0.1
    _overwrite(layout, hotkey, "msl", (1,), plane)
    _resign(layout, hotkey)
    with pytest.raises(DataCheckError) as caught:
        list(stream_leads(layout, hotkey, Stage.ERA5, leads=[24]))
    assert caught.value.kind is CheckKind.MANIPULATION


def test_era5_needs_the_exact_valid_time(small: tuple[RunLayout, str]) -> None:
    layout, hotkey = small  # the store holds +12 h and +24 h only
    with ForecastLoader(layout, hotkey, Stage.ERA5) as loader:
        assert len(loader.load(24).fields) == 69
        with pytest.raises(DataCheckError, match="2026-10-03T00:00:00") as caught:
            loader.load(48)
    assert caught.value.kind is CheckKind.TIME


def test_a_forecast_on_another_grid_is_regridded_and_its_pole_rows_salvaged(
    small: tuple[RunLayout, str],
) -> None:
    """A miner on a cell-centred 6 deg grid (87..-87, 3..357): no pole rows, lon across the seam."""
    layout, hotkey = small
    info = layout.read_info()
    lat = np.arange(87.0, -88.0, -6.0)
    lon = np.arange(3.0, 360.0, 6.0)
    atmosphere = Atmosphere(5, SphereBasis(lat, lon), LEVELS)
    times = [info.init_time + timedelta(hours=h) for h in (12, 24)]
    coords = {"time": np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[ns]"),
              "level": np.asarray(LEVELS), "lat": lat, "lon": lon}
    arrays = {name: ArraySpec((("time", "level") if name in PRESSURE_VARIABLES else ("time",))
                              + ("lat", "lon"), VARIABLES[name].units)
              for name in ALL_VARIABLES}
    shutil.rmtree(layout.forecast(hotkey))
    with PlaneStoreWriter(layout.forecast(hotkey), coords, arrays) as writer:
        for step, valid in enumerate(times):
            for name in ALL_VARIABLES:
                stack = atmosphere.truth(name, valid)
                writer.write(name, (step,), stack if name in PRESSURE_VARIABLES else stack[0])
    _resign(layout, hotkey)
    (lead,) = list(stream_leads(layout, hotkey, Stage.ERA5, leads=[24]))
    t850 = _by_key(lead.fields)[("t", 850)]
    assert lead.repairs[("t", 850)].salvaged_points == 2 * 60  # the two pole rows
    assert np.isfinite(t850.forecast).all()
    interior = slice(1, -1)
    error = _rmse(t850.forecast[interior], t850.truth[interior], t850.lat[interior])
    assert error < 0.2 * _rmse(t850.climatology, t850.truth, t850.lat)


def test_memory_estimate_counts_the_arrays_of_a_lead() -> None:
    quarter = (721, 1440)
    assert estimated_lead_bytes(quarter, Stage.ERA5) == 69 * 3 * 721 * 1440 * 4  # ~0.86 GB
    assert estimated_lead_bytes(quarter, Stage.DAY1) == 5 * 4 * 721 * 1440 * 4
    assert estimated_lead_bytes(quarter, Stage.ERA5, whole_lead=False) == 3 * 721 * 1440 * 4
