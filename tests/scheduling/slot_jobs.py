"""What the scheduling tests share: an hourly schedule of a small task, and a worker's hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gaia.validator.core import Job, JobStatus, Lease, Queue, Task, TaskContext
from gaia.validator.scheduling import Schedule

HOUR = 3600.0
T0 = datetime(2024, 5, 6, 10, 30, tzinfo=UTC).timestamp()
"""Where the ``clock`` fixture starts: 10:30 UTC, half-way through an hourly slot."""

Opener = Callable[[], Awaitable[Queue]]
"""Opens the test's queue (again): each call a connection of its own (memory: the same)."""


@dataclass(frozen=True)
class Tick:
    label: str


async def tick(ctx: TaskContext, payload: Tick) -> str:
    return payload.label


TICK = Task("test.tick", tick, Tick)


def hourly(name: str = "hourly", **options: object) -> Schedule:
    """An hourly schedule from 2024-01-01 00:00 UTC."""
    return Schedule(
        name,
        TICK,
        every=timedelta(hours=1),
        payload=Tick(name),
        start=datetime(2024, 1, 1, tzinfo=UTC),
        **options,  # type: ignore[arg-type]
    )


def slot_at(hour: int, *, schedule: str = "hourly", day: int = 6) -> str:
    """The job id of the slot at ``hour``:00 UTC on 2024-05-``day``."""
    return f"sched-{schedule}-202405{day:02d}T{hour:02d}0000Z"


async def all_jobs(queue: Queue) -> list[Job]:
    return await queue.list_jobs(limit=1000)


async def slot_ids(queue: Queue) -> list[str]:
    """The ids of every job in the queue, sorted (a slot enqueued twice would appear twice)."""
    return sorted(job.id for job in await all_jobs(queue))


async def claim(queue: Queue, job_id: str) -> Lease:
    """Claim the next due job as a worker would; it must be ``job_id``."""
    lease = await queue.claim("test-worker", types=[TICK.name], lease_seconds=24 * HOUR)
    assert lease is not None, f"nothing to claim; expected {job_id}"
    assert lease.job_id == job_id
    assert lease.job.status is JobStatus.RUNNING
    return lease


async def finish(queue: Queue, job_id: str) -> None:
    """Claim and complete ``job_id`` (the next due job)."""
    await queue.complete(await claim(queue, job_id), "done")
