"""Score a run end to end on one machine: queue, results, process pool, shadow log, worker pool.

This is the assembly the ``gaia weather`` commands use: it enqueues the run's jobs into the queue
(SQLite by default), serves them with a WorkerPool whose scoring kernels run in the ProcessPool,
waits until every stage job is finished and every aggregation has run, and returns the
per-miner table from the results store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gaia.tasks.weather.data.stores import RunLayout
from gaia.tasks.weather.results import MinerRow, open_results
from gaia.validator.adapters.weather.handlers import WeatherHandlers
from gaia.validator.adapters.weather.planning import plan_run
from gaia.validator.adapters.weather.policies import AGGREGATE
from gaia.validator.adapters.weather.registry import build_registry
from gaia.validator.adapters.weather.scoring_paths import ScoringPaths
from gaia.validator.adapters.weather.services import WeatherServices
from gaia.validator.core.job import Job
from gaia.validator.core.queue import Queue
from gaia.validator.core.status import ACTIVE_STATUSES, TERMINAL_STATUSES
from gaia.validator.migration import RolloutFlag, ShadowLog, ShadowRunner, Tolerance
from gaia.validator.process import PoolSettings, ProcessPool
from gaia.validator.queues import open_queue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.middleware import Middleware, default_middleware

FLAG_NAME = "weather_scoring"
SHADOW_TOLERANCE = Tolerance(rtol=1e-9, atol=1e-12)
"""The two scorers agree to 1e-9 relative; atol covers components that are 0 up to rounding."""
PRELOAD = (
    "numpy",
    "xarray",
    "gaia.tasks.weather.compute",
    "gaia.tasks.weather.scoring.kernels",
    "gaia.tasks.weather.scoring.reference",
    "gaia.tasks.weather.scoring.day1",
)


@dataclass(frozen=True)
class RunSettings:
    queue_url: str
    results_url: str
    shadow_log: Path
    rollout: str = "new=1,shadow=off"
    """Rollout flag: fraction routed to the fast scorer, and whether to shadow the other."""
    concurrency: int = 4
    process_workers: int = 2
    memory_budget_mb: float | None = None


async def score_run(
    run_dir: Path, settings: RunSettings, extra_middleware: Sequence[Middleware] = ()
) -> list[MinerRow]:
    run_dir = await asyncio.to_thread(run_dir.resolve)
    info = await asyncio.to_thread(RunLayout(run_dir).read_info)
    flag = RolloutFlag.parse(FLAG_NAME, settings.rollout)
    queue = await open_queue(settings.queue_url)
    results = await open_results(settings.results_url)
    shadow_log = ShadowLog(settings.shadow_log)
    try:
        await results.save_run(info.run_id, info.init_time, {m.hotkey: m.uid for m in info.miners})
        jobs = await queue.enqueue_many(plan_run(run_dir, info))
        process_settings = PoolSettings(
            max_workers=settings.process_workers,
            preload=PRELOAD,
            memory_budget_mb=settings.memory_budget_mb,
        )
        async with ProcessPool(process_settings) as process_pool:
            paths = ScoringPaths(process_pool, ShadowRunner(flag, shadow_log, SHADOW_TOLERANCE))
            handlers = WeatherHandlers(WeatherServices(queue, results, paths))
            pool = WorkerPool(
                queue,
                build_registry(handlers),
                PoolConfig(concurrency=settings.concurrency, idle_wait=0.2),
                middleware=[*default_middleware(), *extra_middleware],
            )
            async with pool:
                await wait_for_run(queue, jobs)
        return await results.miner_table(info.run_id)
    finally:
        await shadow_log.close()
        await results.close()
        await queue.close()


async def wait_for_run(queue: Queue, jobs: Sequence[Job], poll: float = 0.25) -> None:
    """Until every stage job is finished and no aggregation is pending."""
    remaining = {job.id for job in jobs}
    while remaining:
        for job_id in list(remaining):
            job = await queue.get(job_id)
            if job is None or job.status in TERMINAL_STATUSES:
                remaining.discard(job_id)
        await asyncio.sleep(poll)
    while True:
        stats = await queue.stats()
        pending = stats.counts.get(AGGREGATE.name, {})
        if not any(pending.get(status, 0) for status in ACTIVE_STATUSES):
            return
        await asyncio.sleep(poll)
