"""The synthetic run generator: determinism, plausible atmosphere, and each grade's defect."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gaia.tasks.weather.data.grid import regular_grid
from gaia.tasks.weather.data.loader import Stage, stream_leads
from gaia.tasks.weather.data.manifest import build_manifest, chunk_hash, load_frozen_manifest
from gaia.tasks.weather.data.stores import RunLayout, open_dataset
from gaia.tasks.weather.synth import DEFAULT_INIT, generate_run
from gaia.tasks.weather.synth.atmosphere import Atmosphere
from gaia.tasks.weather.synth.grades import Grade, plan_miners
from gaia.tasks.weather.synth.modes import SphereBasis
from gaia.tasks.weather.variables import ALL_VARIABLES, LEVELS, G


def _small(root: Path, seed: int) -> RunLayout:
    return generate_run(root, seed=seed, resolution=6.0, miners=8, forecast_hours=(12, 24, 48))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunLayout:
    return _small(tmp_path_factory.mktemp("synth") / "a", seed=11)


def _expected(run: RunLayout) -> dict[str, dict[str, object]]:
    miners: dict[str, dict[str, object]] = json.loads(run.expected_json.read_text())["miners"]
    return miners


def _hotkey(run: RunLayout, grade: str) -> str:
    return next(k for k, v in _expected(run).items() if v["grade"] == grade)


def _weighted_mean(field: np.ndarray, lat: np.ndarray) -> float:
    weights = np.cos(np.deg2rad(lat))[:, None] * np.ones(field.shape[-1])
    return float(np.nansum(weights * field) / np.sum(weights * np.isfinite(field)))


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    run: RunLayout, tmp_path: Path
) -> None:
    again = _small(tmp_path / "b", seed=11)
    assert again.run_json.read_bytes() == run.run_json.read_bytes()
    assert again.expected_json.read_bytes() == run.expected_json.read_bytes()
    for path in ("truth/era5.zarr", "truth/analysis.zarr", "reference/gfs.zarr",
                 "climatology.zarr"):
        assert build_manifest(again.root / path) == build_manifest(run.root / path), path
    other = _small(tmp_path / "c", seed=12)
    ours = {m.hotkey: m.claimed_hash for m in run.read_info().miners}
    theirs = {m.hotkey: m.claimed_hash for m in other.read_info().miners}
    assert ours.keys() == theirs.keys()
    assert all(ours[k] != theirs[k] for k in ours)


def test_run_json_is_typed_and_every_claimed_hash_verifies(run: RunLayout) -> None:
    info = run.read_info()
    assert info.init_time == DEFAULT_INIT and info.resolution == 6.0
    assert info.extra["forecast_hours"] == [12, 24, 48]
    assert [m.uid for m in info.miners] == list(range(8))
    for miner in info.miners:
        manifest = load_frozen_manifest(run.manifest(miner.hotkey), miner.claimed_hash)
        assert manifest.files


def test_truth_is_a_plausible_atmosphere(run: RunLayout) -> None:
    truth = open_dataset(run.truth_era5)
    lat = truth["lat"].values
    day = truth.isel(time=1)
    t = {level: _weighted_mean(day["t"].sel(level=level).values, lat) for level in LEVELS}
    assert t[1000] > t[850] > t[500] > t[250] > 190.0
    z = [_weighted_mean(day["z"].sel(level=level).values, lat) for level in LEVELS]
    assert z == sorted(z, reverse=True)  # levels run 50 -> 1000 hPa: z falls
    assert 5000 * G < _weighted_mean(day["z"].sel(level=500).values, lat) < 5900 * G
    # Weak tropical height anomalies keep z500 inside the day-1 sanity bounds (45000-60000).
    assert 4700 * G < day["z"].sel(level=500).min() < day["z"].sel(level=500).max() < 5950 * G
    msl = day["msl"].values
    assert 100500 < _weighted_mean(msl, lat) < 102000 and 95000 < msl.min() < msl.max() < 107000
    two_t = day["2t"].values
    assert two_t[len(lat) // 2].mean() > two_t[0].mean() + 20  # equator warmer than the pole
    assert 200 < two_t.min() < two_t.max() < 330
    q = day["q"].values
    assert q.min() >= 0.0
    q_means = [_weighted_mean(q[k], lat) for k in range(len(LEVELS))]
    assert q_means == sorted(q_means)  # humidity grows toward the surface
    assert np.abs(day["u"].values).max() < 100 and np.abs(day["10v"].values).max() < 40
    later = truth.isel(time=2)
    delta = later["z"].sel(level=500).values - day["z"].sel(level=500).values
    assert np.sqrt(np.mean(delta**2)) > 50.0  # leads differ: the weather moves


def test_fields_work_at_quarter_degree() -> None:
    grid = regular_grid(0.25)
    atmosphere = Atmosphere(1, SphereBasis(grid.lat, grid.lon), LEVELS)
    field = atmosphere.truth("z", datetime(2026, 10, 2, tzinfo=UTC))
    assert field.shape == (13, 721, 1440) and np.isfinite(field).all()
    # Same atmosphere as at 3 deg where the grids share points (the modes are grid-independent).
    coarse = regular_grid(3.0)
    other = Atmosphere(1, SphereBasis(coarse.lat, coarse.lon), LEVELS)
    small = other.truth("z", datetime(2026, 10, 2, tzinfo=UTC))
    np.testing.assert_allclose(field[:, ::12, ::12], small, rtol=1e-9)


def test_grades_cycle_after_the_eight_defects() -> None:
    plans = plan_miners(16)
    assert [p.grade for p in plans[:8]] == [
        Grade.SKILFUL, Grade.NOISY, Grade.BIASED, Grade.CLONE, Grade.WRONG_UNITS,
        Grade.NAN_BORDER, Grade.CORRUPTED_CHUNK, Grade.MISSING_VARIABLE,
    ]
    counts = Counter(p.grade for p in plans)
    assert counts[Grade.SKILFUL] == 4 and counts[Grade.NOISY] == 4 and counts[Grade.BIASED] == 3
    assert len({p.hotkey for p in plans}) == 16
    scales = {p.recipe.error_scale for p in plans if p.grade is Grade.SKILFUL}
    assert len(scales) == 4  # different magnitudes


def _raw(run: RunLayout, hotkey: str) -> xr.Dataset:
    return open_dataset(run.forecast(hotkey), normalise=False)


def test_expected_json_names_every_grade(run: RunLayout) -> None:
    expected = _expected(run)
    assert {v["grade"] for v in expected.values()} == {g.value for g in Grade}
    assert expected[_hotkey(run, "corrupted_chunk")]["expected_day1"] == "verification_failed"
    assert expected[_hotkey(run, "wrong_units")]["expected_era5"] == "data_check_failed:units"
    biased = expected[_hotkey(run, "biased")]
    assert isinstance(biased["systematic_sigmas"], float) and biased["systematic_sigmas"] > 0
    assert "systematic" in str(biased["description"])
    body = json.loads(run.expected_json.read_text())
    assert body["grade_order"] == ["skilful", "noisy", "biased"]


def test_clone_is_within_the_clone_thresholds_of_the_reference(run: RunLayout) -> None:
    clone = _raw(run, _hotkey(run, "clone")).isel(time=0)
    reference = xr.open_zarr(run.reference_gfs, chunks=None).isel(time=0)
    thresholds = {"2t": 0.0025, "msl": 400.0, "10u": 0.01, "10v": 0.01}
    for name, delta in thresholds.items():
        assert np.mean((clone[name].values - reference[name].values) ** 2) < 0.5 * delta
    z = clone["z"].sel(level=500).values - reference["z"].sel(level=500).values
    assert 0 < np.mean(z**2) < 50.0


def test_wrong_units_and_missing_variable_stores(run: RunLayout) -> None:
    wrong = _raw(run, _hotkey(run, "wrong_units"))
    assert wrong["z"].attrs["units"] == "m" and wrong["2t"].attrs["units"] == "degC"
    assert float(wrong["z"].sel(level=500).isel(time=0).mean()) < 1e4
    assert float(wrong["2t"].isel(time=0).mean()) < 50
    missing = _raw(run, _hotkey(run, "missing_variable"))
    assert "10v" not in missing.data_vars
    assert set(missing.data_vars) == set(ALL_VARIABLES) - {"10v"}


def test_nan_border_store_has_exactly_its_last_row_missing(run: RunLayout) -> None:
    store = _raw(run, _hotkey(run, "nan_border"))
    for name in ("2t", "z"):
        values = store[name].isel(time=1).values
        assert np.isnan(values[..., -1, :]).all()
        assert np.isfinite(values[..., :-1, :]).all()


def test_corrupted_chunks_differ_from_the_frozen_manifest_and_nothing_else(run: RunLayout) -> None:
    hotkey = _hotkey(run, "corrupted_chunk")
    info = run.read_info().miner(hotkey)
    manifest = load_frozen_manifest(run.manifest(hotkey), info.claimed_hash)
    root = run.forecast(hotkey)
    changed = sorted(
        key for key, digest in manifest.files.items()
        if chunk_hash(key, (root / key).read_bytes()) != digest
    )
    assert changed == _expected(run)[hotkey]["corrupted_files"] == ["2t/0.0.0", "z/1.7.0.0"]


def test_biased_and_noisy_miners_depart_from_the_truth_as_graded(run: RunLayout) -> None:
    truth = open_dataset(run.truth_era5).isel(time=1)["t"].sel(level=850).values

    def t850(grade: str) -> np.ndarray:
        return np.asarray(_raw(run, _hotkey(run, grade)).isel(time=1)["t"].sel(level=850).values)

    skilful, noisy, biased = t850("skilful"), t850("noisy"), t850("biased")
    assert abs(np.mean(skilful - truth)) < 0.2 < np.mean(biased - truth)
    assert np.std(noisy - truth) > 2 * np.std(skilful - truth)


def test_generate_run_refuses_a_used_directory_and_a_non_00z_init(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        generate_run(tmp_path / "used", seed=1)
    with pytest.raises(ValueError, match="00Z"):
        generate_run(tmp_path / "new", seed=1, init_time=datetime(2026, 10, 1, 6, tzinfo=UTC))


@pytest.mark.slow
def test_quarter_degree_run_loads_one_era5_lead(tmp_path: Path) -> None:
    layout = generate_run(tmp_path / "q", seed=2, resolution=0.25, miners=1, forecast_hours=(24,))
    hotkey = layout.read_info().miners[0].hotkey
    (lead,) = list(stream_leads(layout, hotkey, Stage.ERA5, leads=[24]))
    assert len(lead.fields) == 69
    assert all(f.forecast.shape == (721, 1440) for f in lead.fields)
