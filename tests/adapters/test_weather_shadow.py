"""Shadow comparison of the two scoring paths: silent when they agree, loud when they do not.

The paths run in a real ProcessPool. The planted mismatch wraps the pool so that the legacy
path's skill of one field comes back altered, as a bug in one implementation would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.validator.adapters.weather.scoring_paths import ScoringPaths
from gaia.validator.migration import (
    RolloutFlag,
    ShadowLog,
    ShadowMode,
    ShadowRunner,
    Tolerance,
    summarise,
)
from gaia.validator.process import PoolSettings, ProcessPool


def levels_of_z(seed: int = 1) -> list[FieldInputs]:
    rng = np.random.default_rng(seed)
    lat = np.linspace(90, -90, 31)
    fields = []
    for level in (500, 850):
        truth = 5.5e4 + 300 * rng.standard_normal((31, 60))
        clim = truth + 50 * rng.standard_normal((31, 60))
        forecast = truth + 20 * rng.standard_normal((31, 60))
        fields.append(FieldInputs("z", level, 24, forecast, truth, clim, None, lat))
    return fields


class PlantedBug:
    """A process runner that alters the legacy (reference) path's first skill value."""

    def __init__(self, pool: ProcessPool) -> None:
        self._pool = pool

    async def run(
        self,
        fn: Callable[..., object],
        /,
        *args: object,
        timeout: float | None = None,
        memory_mb: float | None = None,
    ) -> object:
        result = await self._pool.run(fn, *args, timeout=timeout, memory_mb=memory_mb)
        if args[1] == "reference" and isinstance(result, list):
            first: FieldMetrics = result[0]
            result[0] = replace(first, skill=first.skill + 1e-3)
        return result


async def shadow_once(tmp_path: Path, planted: bool) -> list[object]:
    flag = RolloutFlag("weather_scoring", 1.0, shadow=ShadowMode.SHADOW)
    async with (
        ProcessPool(PoolSettings(max_workers=1)) as pool,
        ShadowLog(tmp_path / "s.db") as log,
    ):
        runner = PlantedBug(pool) if planted else pool
        paths = ScoringPaths(runner, ShadowRunner(flag, log, Tolerance(rtol=1e-9, atol=1e-12)))
        metrics = await paths.field_metrics(("run-1", "miner-1"), "era5:24:z", levels_of_z(), 300)
        assert [m.level for m in metrics] == [500, 850]
        return list(await log.records())


async def test_agreeing_paths_record_no_mismatch(tmp_path: Path) -> None:
    records = await shadow_once(tmp_path, planted=False)
    report = summarise(records)  # type: ignore[arg-type]
    assert report.compared == 1 and report.clean


async def test_planted_mismatch_is_reported_with_its_path(tmp_path: Path) -> None:
    records = await shadow_once(tmp_path, planted=True)
    report = summarise(records)  # type: ignore[arg-type]
    assert report.with_mismatches == 1 and not report.clean
    assert [summary.path for summary in report.paths] == ["[*].skill"]
    assert report.paths[0].max_abs_diff is not None
    assert abs(report.paths[0].max_abs_diff - 1e-3) < 1e-9
