"""Turn a scoring run on disk into jobs: one per (run, miner, stage), plus aggregation triggers."""

from __future__ import annotations

import math
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
from gaia.validator.core.queue import Queue
from gaia.validator.core.status import JobStatus

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


def aggregation_trigger(run_dir: str, run_id: str, now: float, window: float) -> Job:
    """The run's aggregation for the window of time ``now`` falls in, due when that window ends.

    Every landing in one window shares the job (its dedupe key names the window), so a run
    aggregates about once per ``window`` seconds of landings instead of once per landing. The
    caller must not merge into a job that has already started (see WeatherHandlers).
    """
    if not (window > 0 and math.isfinite(window)):
        raise ValueError(f"aggregation window must be a positive number of seconds, got {window}")
    index = math.floor(now / window)
    return weather_job(
        AGGREGATE,
        AggregatePayload(run_dir, run_id),
        dedupe_key=f"{aggregate_key(run_id)}:window:{index}",
        correlation_id=run_id,
        not_before=(index + 1) * window,
    )


async def trigger_aggregation(
    queue: Queue, run_dir: str, run_id: str, now: float, window: float
) -> Job:
    """Enqueue (or join) the aggregation that will read a landing committed before ``now``.

    Landings within one window of time share one aggregation job, due when the window ends. If
    the window's job has already started (a slow enqueue, a worker whose clock runs ahead), it
    may have read the stores before this landing, so the trigger moves on to the next window: a
    landing never joins a running aggregation, so none is lost. Returns the job it joined.
    """
    while True:
        stored = await queue.enqueue(aggregation_trigger(run_dir, run_id, now, window))
        if stored.status is not JobStatus.RUNNING:
            return stored
        now += window
