"""Streaming loader: one miner, one stage, one lead at a time, as `FieldInputs` on the truth grid.

`ForecastLoader` opens everything lazily once (run.json, the frozen manifest, the miner's store
through verified reads, truth, reference, climatology) and then reads ONE lead per `load(lead)`,
so peak memory is one lead's fields whatever the number of leads; `iter_fields(lead)` is leaner
still (one field at a time). `stream_leads(...)` is the one-call form.

Stage rules (spec sections 1 and 6):
- day-1: lead 12 h, (2t, msl, 10u, 10v, z500); truth = analysis at the valid time; reference = the
  GFS-like forecast nearest the valid time within 3 h; forecast time nearest within max(3, lead) h;
  levels nearest within 10 hPa. A deterministic sample of 32-64 chunks is spot-checked at open.
  A variable or level the forecast lacks is reported as a `SkippedField` (with reason), not dropped.
- ERA5: leads 24..240, all 9 variables on all 13 levels; times and levels exact; the data checks
  run (variables, units, shapes, manipulation, coverage) and remaining NaNs are filled from
  climatology. Any failure raises `DataCheckError` naming the variable.
Both stages: bilinear regridding onto the truth grid, then edge salvage (configurable). Every chunk
of the miner's store that is read is hashed against the frozen manifest first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from types import TracebackType

import numpy as np
import xarray as xr

from gaia.tasks.weather.data.availability import lead_available_at as lead_available_at
from gaia.tasks.weather.data.checks import (
    CheckConfig,
    FieldRepair,
    check_levels_exact,
    check_shape,
    check_time_exact,
    check_units,
    check_variables_present,
    repair_field,
)
from gaia.tasks.weather.data.climatology import Climatology
from gaia.tasks.weather.data.errors import (
    AlignmentError,
    CheckKind,
    DataCheckError,
    LevelMatchError,
    StoreError,
)
from gaia.tasks.weather.data.grid import Grid
from gaia.tasks.weather.data.manifest import (
    ChunkVerifier,
    VerificationConfig,
    load_frozen_manifest,
    spot_check_sample,
)
from gaia.tasks.weather.data.planes import PlaneStore
from gaia.tasks.weather.data.regrid import PlanCache, match_level, match_time
from gaia.tasks.weather.data.stores import RunInfo, RunLayout
from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.variables import (
    ALL_VARIABLES,
    DAY1_LEAD_HOURS,
    DAY1_VARIABLES,
    ERA5_LEAD_HOURS,
    LEVELS,
    PRESSURE_VARIABLES,
)


class Stage(Enum):
    DAY1 = "day1"
    ERA5 = "era5"


@dataclass(frozen=True)
class AlignmentConfig:
    """Day-1 matching tolerances (ERA5 matching is exact); defaults are the spec's."""

    day1_reference_tolerance_hours: float = 3.0
    day1_forecast_min_tolerance_hours: float = 3.0
    """The forecast tolerance is max(this, lead) hours."""
    day1_truth_tolerance_hours: float = 0.0
    day1_level_tolerance_hpa: float = 10.0


@dataclass(frozen=True)
class LoaderConfig:
    checks: CheckConfig = field(default_factory=CheckConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    day1_spot_check: bool = True


@dataclass(frozen=True)
class SkippedField:
    """A day-1 field the forecast cannot provide, and why."""

    variable: str
    level: int | None
    reason: str


@dataclass(frozen=True)
class LoadedField:
    inputs: FieldInputs
    repair: FieldRepair


@dataclass(frozen=True)
class LeadFields:
    """Everything one lead of one miner needs for scoring."""

    stage: Stage
    lead_hours: int
    valid_time: datetime
    fields: list[FieldInputs]
    repairs: dict[tuple[str, int | None], FieldRepair]
    skipped: tuple[SkippedField, ...] = ()


def stage_fields(stage: Stage) -> tuple[tuple[str, int | None], ...]:
    """The (variable, level) pairs scored at a stage, in a fixed order."""
    if stage is Stage.DAY1:
        return DAY1_VARIABLES
    pairs: list[tuple[str, int | None]] = []
    for name in ALL_VARIABLES:
        if name in PRESSURE_VARIABLES:
            pairs.extend((name, level) for level in LEVELS)
        else:
            pairs.append((name, None))
    return tuple(pairs)


def stage_leads(stage: Stage) -> tuple[int, ...]:
    return (DAY1_LEAD_HOURS,) if stage is Stage.DAY1 else ERA5_LEAD_HOURS


def estimated_lead_bytes(
    shape: tuple[int, int], stage: Stage, *, itemsize: int = 4, whole_lead: bool = True
) -> int:
    """Array bytes a lead holds on a truth grid of `shape` (for admission by memory estimate).

    `whole_lead=True` is `load()` (every field's forecast, truth and climatology, plus the
    reference at day-1); False is `iter_fields()` (one field at a time). Interpreter, library and
    decoding overheads come on top (about 100 MB measured at 0.25 deg).
    """
    arrays = 4 if stage is Stage.DAY1 else 3
    fields = len(stage_fields(stage)) if whole_lead else 1
    return fields * arrays * shape[0] * shape[1] * itemsize


class ForecastLoader:
    """One miner's forecast for one stage, opened lazily and read one lead at a time.

    Stores, plane readers, coordinate lookups and regridding plans are set up once per loader;
    a field then costs one verified chunk read of the forecast, one read of the truth (and of the
    reference at day-1), one climatology read, the regridding that is not the identity, and the
    checks.
    """

    def __init__(
        self,
        layout: RunLayout,
        hotkey: str,
        stage: Stage,
        config: LoaderConfig | None = None,
    ) -> None:
        self.layout = layout
        self.hotkey = hotkey
        self.stage = stage
        self.config = config or LoaderConfig()
        self.info: RunInfo = layout.read_info()
        entry = self.info.miner(hotkey)
        manifest = load_frozen_manifest(
            layout.manifest(hotkey), entry.claimed_hash, self.config.verification
        )
        self.verifier = ChunkVerifier(layout.forecast(hotkey), manifest, self.config.verification)
        self.verifier.check_listing()
        self.spot_checked = 0
        if stage is Stage.DAY1 and self.config.day1_spot_check:
            sample = spot_check_sample(manifest, self.info.run_id, self.config.verification)
            self.spot_checked = self.verifier.verify(sample)
        self._plans = PlanCache()
        self._stores: list[PlaneStore] = []
        self._climatology: Climatology | None = None
        try:
            self._open_stores(layout, stage)
        except BaseException:
            self.close()
            raise

    def _open_stores(self, layout: RunLayout, stage: Stage) -> None:
        self.forecast_store = self._track(PlaneStore.open_verified(self.verifier))
        truth_path = layout.truth_analysis if stage is Stage.DAY1 else layout.truth_era5
        self.truth_store = self._track(PlaneStore.open(truth_path, label="truth"))
        self.reference_store = (
            self._track(PlaneStore.open(layout.reference_gfs, label="reference"))
            if stage is Stage.DAY1 else None
        )
        self._climatology = Climatology.open(layout.climatology, self._plans)
        self.climatology = self._climatology
        self.forecast: xr.Dataset = self.forecast_store.dataset
        self.truth: xr.Dataset = self.truth_store.dataset
        self.reference: xr.Dataset | None = (
            self.reference_store.dataset if self.reference_store is not None else None
        )
        self.truth_grid: Grid = self.truth_store.grid
        self.forecast_grid: Grid = self.forecast_store.grid
        self._forecast_plan = self._plans.plan(self.forecast_grid, self.truth_grid)
        self._reference_plan = (
            self._plans.plan(self.reference_store.grid, self.truth_grid)
            if self.reference_store is not None else None
        )
        self._time_index: dict[tuple[str, datetime], int] = {}
        self._level_index: dict[tuple[str, str, int], int] = {}
        if stage is Stage.ERA5:
            self._check_store()
        # Read every variable's metadata now, so reading a lead touches only its chunks.
        for name, _ in stage_fields(stage):
            if self.forecast_store.has(name):
                self.forecast_store.reader(name)

    def _track(self, store: PlaneStore) -> PlaneStore:
        self._stores.append(store)
        return store

    @property
    def leads(self) -> tuple[int, ...]:
        return stage_leads(self.stage)

    def valid_time(self, lead_hours: int) -> datetime:
        return self.info.init_time + timedelta(hours=lead_hours)

    def _check_store(self) -> None:
        check_variables_present([str(name) for name in self.forecast.data_vars], ALL_VARIABLES)
        check_units({name: self.forecast[name].attrs.get("units") for name in ALL_VARIABLES})
        if "time" not in self.forecast.coords:
            raise DataCheckError(CheckKind.TIME, "forecast has no 'time' coordinate")
        for name in ALL_VARIABLES:
            dims = {str(dim) for dim in self.forecast[name].dims}
            wanted = {"time", "lat", "lon"} | ({"level"} if name in PRESSURE_VARIABLES else set())
            if dims != wanted:
                raise DataCheckError(
                    CheckKind.SHAPE,
                    f"{name} has dims {sorted(dims)}, expected {sorted(wanted)}",
                    variable=name,
                )
        check_levels_exact(self.forecast["level"].values, LEVELS, what="forecast")

    def _store_time(
        self, store: PlaneStore, valid: datetime, tolerance: timedelta, what: str
    ) -> int:
        key = (what, valid)
        found = self._time_index.get(key)
        if found is None:
            found = match_time(store.coord("time"), valid, tolerance, what=what)
            self._time_index[key] = found
        return found

    def _store_level(
        self, store: PlaneStore, name: str, level: int, tolerance_hpa: float, what: str
    ) -> int:
        key = (what, name, level)
        found = self._level_index.get(key)
        if found is None:
            if "level" not in store.reader(name).dims:
                raise LevelMatchError(f"{what} {name} has no level dimension")
            found = match_level(store.coord("level"), level, tolerance_hpa, what=what)
            self._level_index[key] = found
        return found

    def _truth_plane(self, name: str, level: int | None, valid: datetime) -> np.ndarray:
        tolerance = (
            timedelta(hours=self.config.alignment.day1_truth_tolerance_hours)
            if self.stage is Stage.DAY1 else timedelta(0)
        )
        selection = {"time": self._store_time(self.truth_store, valid, tolerance, "truth")}
        if level is not None:
            selection["level"] = self._store_level(self.truth_store, name, level, 0.0, "truth")
        return self.truth_store.plane(name, selection)

    def _reference_plane(self, name: str, level: int | None, valid: datetime) -> np.ndarray:
        assert self.reference_store is not None and self._reference_plan is not None
        store = self.reference_store
        alignment = self.config.alignment
        tolerance = timedelta(hours=alignment.day1_reference_tolerance_hours)
        selection = {"time": self._store_time(store, valid, tolerance, "reference")}
        if level is not None:
            selection["level"] = self._store_level(
                store, name, level, alignment.day1_level_tolerance_hpa, "reference"
            )
        return self._reference_plan.apply(store.plane(name, selection))

    def _day1_selection(
        self, name: str, level: int | None, time_index: int
    ) -> dict[str, int] | SkippedField:
        store = self.forecast_store
        if not store.has(name):
            return SkippedField(name, level, f"forecast lacks variable {name}")
        selection = {"time": time_index}
        if level is not None:
            if "level" not in store.reader(name).dims:
                return SkippedField(name, level, f"forecast {name} has no level dimension")
            try:
                selection["level"] = self._store_level(
                    store, name, level, self.config.alignment.day1_level_tolerance_hpa,
                    f"forecast {name}",
                )
            except LevelMatchError as exc:
                return SkippedField(name, level, exc.reason)
        return selection

    def _forecast_time_index(self, lead_hours: int, valid: datetime) -> int:
        if "time" not in self.forecast.coords:
            raise AlignmentError("forecast has no 'time' coordinate")
        times = self.forecast_store.coord("time")
        if self.stage is Stage.ERA5:
            return check_time_exact(times, valid, what="forecast")
        hours = max(self.config.alignment.day1_forecast_min_tolerance_hours, float(lead_hours))
        return match_time(times, valid, timedelta(hours=hours), what="forecast")

    def iter_fields(self, lead_hours: int) -> Iterator[LoadedField | SkippedField]:
        """The fields of one lead, one at a time (the leanest way to read a lead)."""
        if lead_hours not in self.leads:
            raise ValueError(f"lead {lead_hours} h is not a {self.stage.value} lead {self.leads}")
        valid = self.valid_time(lead_hours)
        time_index = self._forecast_time_index(lead_hours, valid)
        level_index: dict[int, int] = {}
        if self.stage is Stage.ERA5:
            level_index = check_levels_exact(
                self.forecast_store.coord("level"), LEVELS, what="forecast"
            )
        checked = self.stage is Stage.ERA5
        for name, level in stage_fields(self.stage):
            selection: dict[str, int] | SkippedField
            if self.stage is Stage.DAY1:
                selection = self._day1_selection(name, level, time_index)
                if isinstance(selection, SkippedField):
                    yield selection
                    continue
            else:
                selection = {"time": time_index}
                if level is not None:
                    selection["level"] = level_index[level]
            # A reader returns a new array, and a non-identity plan a new array: ours to repair.
            forecast = self._forecast_plan.apply(self.forecast_store.plane(name, selection))
            truth = self._truth_plane(name, level, valid)
            check_shape(forecast, truth.shape, name, level)
            climatology = self._climatology_on_grid(name, level, valid)
            reference = (
                self._reference_plane(name, level, valid) if self.stage is Stage.DAY1 else None
            )
            repair = repair_field(
                forecast, climatology, self.config.checks, name, level, checked=checked
            )
            inputs = FieldInputs(
                variable=name, level=level, lead_hours=lead_hours, forecast=forecast,
                truth=truth, climatology=climatology, reference=reference,
                lat=self.truth_grid.lat,
            )
            yield LoadedField(inputs=inputs, repair=repair)

    def load(self, lead_hours: int) -> LeadFields:
        """Read, verify, align, check and repair every field of one lead."""
        fields: list[FieldInputs] = []
        repairs: dict[tuple[str, int | None], FieldRepair] = {}
        skipped: list[SkippedField] = []
        for item in self.iter_fields(lead_hours):
            if isinstance(item, SkippedField):
                skipped.append(item)
                continue
            fields.append(item.inputs)
            repairs[(item.inputs.variable, item.inputs.level)] = item.repair
        return LeadFields(
            stage=self.stage, lead_hours=lead_hours, valid_time=self.valid_time(lead_hours),
            fields=fields, repairs=repairs, skipped=tuple(skipped),
        )

    def stream(self, leads: Sequence[int] | None = None) -> Iterator[LeadFields]:
        """`load` each lead in turn; the previous lead is released before the next is read."""
        for lead in self.leads if leads is None else leads:
            yield self.load(lead)

    def _climatology_on_grid(self, name: str, level: int | None, valid: datetime) -> np.ndarray:
        assert self._climatology is not None
        return self._climatology.on_grid(name, level, valid, self.truth_grid)

    def close(self) -> None:
        """Close every store opened (safe to call twice)."""
        stores, self._stores = self._stores, []
        for store in stores:
            store.close()
        if self._climatology is not None:
            self._climatology.close()
            self._climatology = None

    def __enter__(self) -> ForecastLoader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def stream_leads(
    layout: RunLayout,
    hotkey: str,
    stage: Stage,
    *,
    leads: Sequence[int] | None = None,
    config: LoaderConfig | None = None,
) -> Iterator[LeadFields]:
    """Yield one `LeadFields` per lead (default: every lead of the stage), reading one at a time.

    Raises (from the first `next`, or at the lead concerned): `VerificationError` (claimed hash,
    chunk mismatch, unknown or missing file), `StoreError` (unsafe or unreadable store),
    `DataCheckError` (ERA5 data checks), `AlignmentError` (time/level/grid matching),
    `ClimatologyError`.
    """
    with ForecastLoader(layout, hotkey, stage, config) as loader:
        yield from loader.stream(leads)


__all__ = [
    "AlignmentConfig",
    "ForecastLoader",
    "LeadFields",
    "LoadedField",
    "LoaderConfig",
    "SkippedField",
    "Stage",
    "StoreError",
    "estimated_lead_bytes",
    "lead_available_at",
    "stage_fields",
    "stage_leads",
    "stream_leads",
]
