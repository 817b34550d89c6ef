"""``gaia demo``: a few hundred jobs of two types through a queue and the WorkerPool."""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

from gaia.cli.progress import ProgressReporter
from gaia.cli.tables import print_table
from gaia.examples.demo import demo_jobs, registry
from gaia.validator.core.status import ACTIVE_STATUSES, JobStatus
from gaia.validator.queues import open_queue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.middleware import default_middleware

DEFAULT_LOG_FILE = Path("data/logs/demo.jsonl")
"""The demo's retries and dead letters are expected: their log lines go here, not the screen."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=400, help="number of jobs (default 400)")
    parser.add_argument("--concurrency", type=int, default=10, help="job slots (default 10)")
    parser.add_argument("--queue", default="memory://", help="queue URL (default memory://)")
    parser.add_argument("--seed", type=int, default=7)


async def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise SystemExit("--jobs must be >= 1")
    queue = await open_queue(args.queue)
    jobs = await queue.enqueue_many(demo_jobs(args.jobs, args.seed))
    reporter = ProgressReporter(len(jobs), "demo jobs")
    pool = WorkerPool(
        queue,
        registry,
        PoolConfig(concurrency=args.concurrency, idle_wait=0.1),
        middleware=[*default_middleware(), reporter],
    )
    with reporter:
        await pool.start()
        while True:
            stats = await queue.stats()
            if sum(stats.total(s) for s in ACTIVE_STATUSES) == 0:
                break
            await asyncio.sleep(0.05)
        await pool.stop()
    stats = await queue.stats()
    await queue.close()
    rows = []
    for job_type in sorted(stats.counts):
        durations = reporter.durations.get(job_type, [0.0])
        rows.append(
            [
                job_type,
                stats.counts[job_type].get(JobStatus.SUCCEEDED, 0),
                reporter.outcomes[(job_type, "retried")],
                stats.counts[job_type].get(JobStatus.DEAD, 0),
                statistics.fmean(durations) * 1000,
                _p95(durations) * 1000,
            ]
        )
    print_table(
        f"{len(jobs)} jobs in {reporter.elapsed:.2f} s ({len(jobs) / reporter.elapsed:.0f} jobs/s)",
        ["job type", "succeeded", "retries", "dead", "mean ms", "p95 ms"],
        rows,
    )
    print(f"job logs: {DEFAULT_LOG_FILE if args.log_file is None else args.log_file}")
    dead = stats.total(JobStatus.DEAD)
    succeeded = stats.total(JobStatus.SUCCEEDED)
    return 0 if succeeded + dead == len(jobs) else 1


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
