"""Score a run end to end on one machine: queue, results, process pool, shadow log, worker pool.

This is the assembly ``gaia weather run|score`` use: it enqueues the run's jobs into the queue
(SQLite by default), serves them with a weather worker (``serving.open_weather_worker``: a
WorkerPool whose scoring kernels run in the ProcessPool), waits until every stage job is
finished and every aggregation has run, and returns the per-miner table from the results store.
``enqueue_run`` alone is the producer's half: it hands a run to ``gaia weather worker`` processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gaia.tasks.weather.data.stores import RunInfo, RunLayout
from gaia.tasks.weather.results import MinerRow
from gaia.validator.adapters.weather.planning import plan_run
from gaia.validator.adapters.weather.policies import AGGREGATE
from gaia.validator.adapters.weather.serving import WorkerSettings, open_weather_worker
from gaia.validator.core.job import Job
from gaia.validator.core.queue import Queue
from gaia.validator.core.status import ACTIVE_STATUSES, TERMINAL_STATUSES
from gaia.validator.workers.middleware import Middleware

RunSettings = WorkerSettings
"""``score_run`` is built from the same settings as a weather worker."""


async def read_run(run_dir: Path) -> tuple[Path, RunInfo]:
    """The run directory as an absolute path (jobs carry it to other machines) and its info."""
    resolved = await asyncio.to_thread(run_dir.resolve)
    info = await asyncio.to_thread(RunLayout(resolved).read_info)
    return resolved, info


async def enqueue_run(queue: Queue, run_dir: Path, info: RunInfo) -> tuple[list[Job], int]:
    """Enqueue the run's stage jobs. Returns, per planned job, the stored one or its active
    duplicate (a repeat while the run's jobs are queued or running adds nothing), and how many
    of them are new."""
    planned = plan_run(run_dir, info)
    stored = await queue.enqueue_many(planned)
    return stored, sum(a.id == b.id for a, b in zip(planned, stored, strict=True))


async def score_run(
    run_dir: Path, settings: RunSettings, extra_middleware: Sequence[Middleware] = ()
) -> list[MinerRow]:
    run_dir, info = await read_run(run_dir)
    async with open_weather_worker(settings, extra_middleware) as worker:
        await worker.results.save_run(
            info.run_id, info.init_time, {m.hotkey: m.uid for m in info.miners}
        )
        jobs, _ = await enqueue_run(worker.queue, run_dir, info)
        async with worker.pool:
            await wait_for_run(worker.queue, jobs)
        return await worker.results.miner_table(info.run_id)


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
