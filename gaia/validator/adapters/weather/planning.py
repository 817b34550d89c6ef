"""Turn a scoring run on disk into jobs: one per (run, miner, stage), plus aggregation triggers."""

from __future__ import annotations

from pathlib import Path

from gaia.tasks.weather.data.stores import RunInfo
from gaia.validator.adapters.weather.memory import batch_memory_mb, grid_shape
from gaia.validator.adapters.weather.payloads import (
    AggregatePayload,
    StageName,
    StagePayload,
    aggregate_key,
    stage_key,
)
from gaia.validator.adapters.weather.policies import AGGREGATE, DAY1, ERA5, weather_job
from gaia.validator.core.job import Job

STAGES: tuple[StageName, ...] = ("day1", "era5")


def plan_run(run_dir: Path, info: RunInfo) -> list[Job]:
    """Every stage job of the run, each with a dedupe key at exactly its unit of work and a
    memory estimate from the run's grid."""
    lat, lon = grid_shape(info.resolution)
    jobs = []
    for miner in info.miners:
        for stage in STAGES:
            jobs.append(
                weather_job(
                    DAY1 if stage == "day1" else ERA5,
                    StagePayload(str(run_dir), info.run_id, miner.hotkey, stage),
                    dedupe_key=stage_key(info.run_id, miner.hotkey, stage),
                    memory_mb=batch_memory_mb(lat, lon, stage),
                    correlation_id=info.run_id,
                )
            )
    return jobs


def aggregation_trigger(run_dir: str, run_id: str, after: str) -> Job:
    """An aggregation of the run, triggered by one landing (``after`` names it).

    Each landing gets its own key, so a trigger never merges into an aggregation that is already
    running and may have read the stores before this landing: nothing is lost, and the same
    landing delivered twice still aggregates once.
    """
    return weather_job(
        AGGREGATE,
        AggregatePayload(run_dir, run_id),
        dedupe_key=f"{aggregate_key(run_id)}:after:{after}",
        correlation_id=run_id,
    )
