"""Generate a complete synthetic scoring run on disk (see the weather contract's layout).

`generate_run(root, seed=...)` writes truth (ERA5-like and analysis), a GFS-like reference, a
WB2-layout climatology and graded miner forecasts, each forecast with its manifest and claimed hash
in run.json, plus expected.json naming every miner's grade and the outcome the scorer should reach.
Output is byte-identical for the same arguments. Fields are generated one valid time and one
variable at a time, so memory stays at a few planes per store even at 0.25 deg.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from gaia.tasks.weather.data.grid import Grid, regular_grid
from gaia.tasks.weather.data.manifest import build_manifest, write_manifest
from gaia.tasks.weather.data.stores import (
    ArraySpec,
    MinerEntry,
    PlaneStoreWriter,
    RunInfo,
    RunLayout,
)
from gaia.tasks.weather.synth.atmosphere import Atmosphere
from gaia.tasks.weather.synth.climatology import write_climatology
from gaia.tasks.weather.synth.expected import corrupt_chunks, expected_outcomes
from gaia.tasks.weather.synth.grades import (
    ANALYSIS_KEY,
    ANALYSIS_RECIPE,
    REFERENCE_KEY,
    REFERENCE_RECIPE,
    WRONG_UNITS,
    ErrorModel,
    Grade,
    MinerPlan,
    plan_miners,
    to_wrong_units,
)
from gaia.tasks.weather.synth.modes import SphereBasis
from gaia.tasks.weather.variables import (
    ALL_VARIABLES,
    DAY1_LEAD_HOURS,
    ERA5_LEAD_HOURS,
    FORECAST_STEPS,
    LEVELS,
    PRESSURE_VARIABLES,
    STEP_HOURS,
    VARIABLES,
)

DEFAULT_INIT = datetime(2026, 10, 1, tzinfo=UTC)
Steps = Literal["scored", "all"]


def forecast_hours_for(steps: Steps) -> tuple[int, ...]:
    """'scored': the day-1 lead and the ERA5 leads; 'all': the 40 six-hourly steps."""
    if steps == "all":
        return tuple(STEP_HOURS * (k + 1) for k in range(FORECAST_STEPS))
    return tuple(sorted({DAY1_LEAD_HOURS, *ERA5_LEAD_HOURS}))


@dataclass(frozen=True)
class _Layout:
    """How one store lays out its grid."""

    lat_name: str
    lon_name: str
    lat_values: np.ndarray
    lon_values: np.ndarray
    lon_order: np.ndarray
    flip_lat: bool

    @classmethod
    def standard(cls, grid: Grid) -> _Layout:
        order = np.arange(grid.lon.size)
        return cls("lat", "lon", grid.lat, grid.lon, order, flip_lat=False)

    @classmethod
    def era5_style(cls, grid: Grid) -> _Layout:
        signed = np.where(grid.lon >= 180.0, grid.lon - 360.0, grid.lon)
        order = np.argsort(signed, kind="stable")
        return cls("latitude", "longitude", grid.lat[::-1].copy(), signed[order], order, True)

    def arrange(self, stack: np.ndarray) -> np.ndarray:
        if not self.flip_lat and self.lat_name == "lat":
            return stack
        if self.flip_lat:
            stack = stack[..., ::-1, :]
        return stack[..., self.lon_order]


def _writer(
    path: Path,
    times: Sequence[datetime],
    layout: _Layout,
    *,
    variables: Sequence[str] = ALL_VARIABLES,
    units: dict[str, str] | None = None,
    attrs: dict[str, str] | None = None,
    executor: Executor | None = None,
) -> PlaneStoreWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    coords = {
        "time": np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[ns]"),
        "level": np.asarray(LEVELS, dtype=np.int64),
        layout.lat_name: layout.lat_values,
        layout.lon_name: layout.lon_values,
    }
    arrays = {}
    for name in variables:
        dims = ("time", "level") if name in PRESSURE_VARIABLES else ("time",)
        arrays[name] = ArraySpec(
            (*dims, layout.lat_name, layout.lon_name),
            (units or {}).get(name, VARIABLES[name].units),
        )
    return PlaneStoreWriter(path, coords, arrays, attrs=attrs, executor=executor)


@dataclass
class _MinerStore:
    plan: MinerPlan
    layout: _Layout
    writer: PlaneStoreWriter


def _open_miners(run: RunLayout, plans: list[MinerPlan], times: Sequence[datetime],
                 grid: Grid, executor: Executor) -> list[_MinerStore]:
    stores = []
    for plan in plans:
        layout = _Layout.era5_style(grid) if plan.era5_conventions else _Layout.standard(grid)
        variables = [v for v in ALL_VARIABLES if v not in plan.missing_variables]
        units = (
            {name: spec[0] for name, spec in WRONG_UNITS.items()}
            if plan.grade is Grade.WRONG_UNITS else None
        )
        writer = _writer(run.forecast(plan.hotkey), times, layout, variables=variables,
                         units=units, attrs={"miner": plan.hotkey, "grade": plan.grade.value},
                         executor=executor)
        stores.append(_MinerStore(plan, layout, writer))
    return stores


def _write(writer: PlaneStoreWriter, layout: _Layout, name: str, step: int,
           stack: np.ndarray) -> None:
    data = layout.arrange(stack.astype(np.float32, copy=False))
    writer.write(name, (step,), data if name in PRESSURE_VARIABLES else data[0])


def _miner_stack(errors: ErrorModel, store: _MinerStore, name: str, truth: np.ndarray,
                 reference: np.ndarray, valid: datetime, lead: int, step: int) -> np.ndarray:
    plan = store.plan
    if plan.grade is Grade.CLONE:
        stack = errors.clone(plan.uid, name, reference, step)
    else:
        stack = errors.perturb(plan.uid, plan.recipe, name, truth, valid, lead, step)
    if plan.grade is Grade.WRONG_UNITS:
        stack = to_wrong_units(name, stack)
    if plan.grade is Grade.NAN_BORDER:
        stack = stack.copy()
        stack[:, -1, :] = np.nan
    return stack


def _write_stores(
    run: RunLayout,
    seed: int,
    grid: Grid,
    times: Sequence[datetime],
    hours: Sequence[int],
    plans: list[MinerPlan],
    pool: Executor,
) -> dict[str, dict[str, str]]:
    """Truth, analysis, reference and miner forecasts, one valid time and variable at a time.

    Returns, per miner hotkey, the manifest hashes of the chunks written (for its manifest).
    """
    atmosphere = Atmosphere(seed, SphereBasis(grid.lat, grid.lon), LEVELS)
    errors = ErrorModel(seed, atmosphere)
    standard = _Layout.standard(grid)
    era5 = _writer(run.truth_era5, times, standard, executor=pool,
                   attrs={"source": "synthetic ERA5-like truth"})
    analysis = _writer(run.truth_analysis, times, standard, executor=pool,
                       attrs={"source": "synthetic GFS-like analysis"})
    gfs = _writer(run.reference_gfs, times, standard, executor=pool,
                  attrs={"source": "synthetic GFS-like forecast"})
    stores = _open_miners(run, plans, times, grid, pool)
    for step, (valid, lead) in enumerate(zip(times, hours, strict=True)):
        for name in ALL_VARIABLES:
            truth = atmosphere.truth(name, valid).astype(np.float32)
            _write(era5, standard, name, step, truth)
            analysed = errors.perturb(ANALYSIS_KEY, ANALYSIS_RECIPE, name, truth, valid, 0, step)
            _write(analysis, standard, name, step, analysed)
            reference = errors.perturb(REFERENCE_KEY, REFERENCE_RECIPE, name, truth, valid,
                                       lead, step)
            _write(gfs, standard, name, step, reference)
            for store in stores:
                if name in store.plan.missing_variables:
                    continue
                stack = _miner_stack(errors, store, name, truth, reference, valid, lead, step)
                _write(store.writer, store.layout, name, step, stack)
    for writer in (era5, analysis, gfs, *(store.writer for store in stores)):
        writer.close()
    return {store.plan.hotkey: store.writer.chunk_hashes for store in stores}


def generate_run(
    root: Path,
    *,
    seed: int,
    resolution: float = 1.5,
    miners: int = 16,
    init_time: datetime = DEFAULT_INIT,
    steps: Steps = "scored",
    forecast_hours: Sequence[int] | None = None,
    climatology_resolution: float | None = None,
) -> RunLayout:
    """Write a synthetic scoring run under `root` (which must not exist or be empty).

    `forecast_hours` overrides `steps` (e.g. (12, 24) for a small 0.25 deg run). The climatology is
    written on `climatology_resolution` (default: max(resolution, 3.0)).
    """
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty")
    if init_time.tzinfo is None:
        init_time = init_time.replace(tzinfo=UTC)
    init_time = init_time.astimezone(UTC)
    if (init_time.hour, init_time.minute, init_time.second) != (0, 0, 0):
        raise ValueError(f"init_time must be 00Z, got {init_time.isoformat()}")
    hours = tuple(sorted(set(forecast_hours))) if forecast_hours else forecast_hours_for(steps)
    if miners < 0 or any(h <= 0 for h in hours):
        raise ValueError("miners must be >= 0 and forecast hours > 0")
    run = RunLayout(root)
    times = [init_time + timedelta(hours=h) for h in hours]
    plans = plan_miners(miners)
    grid = regular_grid(resolution)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="synth-writer") as pool:
        written = _write_stores(run, seed, grid, times, hours, plans, pool)
    days = {t.timetuple().tm_yday for t in times}
    write_climatology(run.climatology, seed=seed, days=days,
                      resolution=climatology_resolution or max(resolution, 3.0))
    entries = []
    for plan in plans:
        manifest = build_manifest(run.forecast(plan.hotkey), written[plan.hotkey])
        claimed = write_manifest(manifest, run.manifest(plan.hotkey))
        entries.append(MinerEntry(uid=plan.uid, hotkey=plan.hotkey, claimed_hash=claimed))
    corrupted = corrupt_chunks(run, plans, hours)
    run_id = f"synth-{seed}-{init_time:%Y%m%dT%H}Z-{resolution:g}deg"
    info = RunInfo(
        run_id=run_id, init_time=init_time, resolution=resolution, miners=tuple(entries),
        extra={"seed": seed, "forecast_hours": list(hours), "generator": "gaia.synth"},
    )
    run.write_info(info)
    body = expected_outcomes(info, plans, corrupted)
    run.expected_json.write_text(json.dumps(body, sort_keys=True, indent=2) + "\n",
                                 encoding="utf-8")
    return run
