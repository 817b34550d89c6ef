"""``gaia admin --queue URL ACTION``: look into a queue and act on jobs.

Actions: ``stats`` (counts by type and status), ``jobs`` (list, filtered), ``show ID`` (one job
with its last error and traceback), ``stuck`` (what is stuck and why), ``requeue ID`` (a dead job
back to queued), ``cancel ID``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable

from gaia.cli.tables import print_table
from gaia.validator.core.codec import job_to_record
from gaia.validator.core.job import Job
from gaia.validator.core.queue import Queue
from gaia.validator.core.status import JobStatus
from gaia.validator.queues import open_queue

STUCK_AFTER_SECONDS = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, help="queue URL")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("stats", help="counts by job type and status")
    jobs = actions.add_parser("jobs", help="list jobs")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs.add_argument("--type")
    jobs.add_argument("--limit", type=int, default=50)
    for name, text in (
        ("show", "one job in full"),
        ("requeue", "move a dead job back to queued"),
        ("cancel", "cancel a queued or running job"),
    ):
        actions.add_parser(name, help=text).add_argument("job_id")
    stuck = actions.add_parser("stuck", help="what is stuck and why")
    stuck.add_argument(
        "--after",
        type=float,
        default=STUCK_AFTER_SECONDS,
        help="a due job waiting longer than this is stuck (seconds)",
    )


async def run(args: argparse.Namespace) -> int:
    queue = await open_queue(args.queue)
    try:
        return await ACTIONS[args.action](queue, args)
    finally:
        await queue.close()


async def show_stats(queue: Queue, args: argparse.Namespace) -> int:
    stats = await queue.stats()
    statuses = list(JobStatus)
    rows = [
        [job_type, *(stats.counts[job_type].get(s, 0) for s in statuses)]
        for job_type in sorted(stats.counts)
    ]
    print_table("queue", ["type", *(s.value for s in statuses)], rows)
    age = "none due" if stats.oldest_due_age is None else f"{stats.oldest_due_age:.1f} s"
    print(f"oldest due job waited: {age}; expired leases: {stats.expired_leases}")
    return 0


async def list_jobs(queue: Queue, args: argparse.Namespace) -> int:
    status = JobStatus(args.status) if args.status else None
    jobs = await queue.list_jobs(status=status, type=args.type, limit=args.limit)
    print_table(
        f"{len(jobs)} jobs",
        ["id", "type", "status", "attempts", "age s", "error"],
        [_row(job) for job in jobs],
    )
    return 0


def _row(job: Job) -> list[object]:
    error = job.error.message[:60] if job.error else ""
    return [
        job.id,
        job.type,
        job.status.value,
        f"{job.attempts}/{job.max_attempts}",
        round(time.time() - job.created_at, 1),
        error,
    ]


async def show_job(queue: Queue, args: argparse.Namespace) -> int:
    job = await queue.get(args.job_id)
    if job is None:
        print(f"no job {args.job_id}")
        return 1
    print(json.dumps(job_to_record(job), indent=2))
    return 0


async def find_stuck(queue: Queue, args: argparse.Namespace) -> int:
    """Expired leases (a worker died), long-waiting due jobs (no worker serves the type, or too
    few), and dead jobs (with their last error)."""
    now = time.time()
    reasons: list[list[object]] = []
    for job in await queue.list_jobs(status=JobStatus.RUNNING, limit=10_000):
        if job.lease_expires_at is not None and job.lease_expires_at < now:
            reasons.append(
                [
                    job.id,
                    job.type,
                    "running, lease expired",
                    f"worker {job.worker_id} stopped heartbeating; the reaper will reclaim it",
                ]
            )
    for status in (JobStatus.QUEUED, JobStatus.RETRY_SCHEDULED):
        for job in await queue.list_jobs(status=status, limit=10_000):
            waited = now - job.not_before
            if waited > args.after:
                reasons.append(
                    [
                        job.id,
                        job.type,
                        f"{status.value}, due {waited:.0f} s ago",
                        f"no free worker claims type {job.type}",
                    ]
                )
    for job in await queue.list_jobs(status=JobStatus.DEAD, limit=10_000):
        error = job.error.message if job.error else "no error recorded"
        reasons.append([job.id, job.type, "dead", error[:100]])
    print_table(f"{len(reasons)} stuck jobs", ["id", "type", "state", "why"], reasons)
    return 0 if not reasons else 3


async def requeue_job(queue: Queue, args: argparse.Namespace) -> int:
    job = await queue.requeue(args.job_id)
    print(f"{job.id}: {job.status.value}")
    return 0


async def cancel_job(queue: Queue, args: argparse.Namespace) -> int:
    job = await queue.cancel(args.job_id)
    print(f"{job.id}: {job.status.value}")
    return 0


ACTIONS: dict[str, Callable[[Queue, argparse.Namespace], Awaitable[int]]] = {
    "stats": show_stats,
    "jobs": list_jobs,
    "show": show_job,
    "stuck": find_stuck,
    "requeue": requeue_job,
    "cancel": cancel_job,
}
