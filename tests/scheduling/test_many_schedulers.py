"""Several schedulers on one queue, each over its own connection, with no leader: every slot
is enqueued exactly once, and the backend's refusal of a stored id counts as "already there"."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from manual_clock import ManualClock
from slot_jobs import TICK, Opener, all_jobs, claim, hourly, slot_at

from gaia.validator.core import Job, JobStatus, Queue
from gaia.validator.scheduling import Placement, Schedule, Scheduler, place_slot

SCHEDULERS = 4


async def finish_everything_due(queue: Queue) -> int:
    finished = 0
    while (lease := await queue.claim("test-worker", types=[TICK.name])) is not None:
        await queue.complete(lease, "done")
        finished += 1
    return finished


async def test_schedulers_racing_on_one_queue_enqueue_each_slot_once(
    open_at: Opener, clock: ManualClock
) -> None:
    def schedules() -> list[Schedule]:
        return [hourly("latest"), hourly("backlog", catch_up="all", max_catch_up=3)]

    schedulers = [
        Scheduler(await open_at(), schedules(), clock=clock, recheck=1.0) for _ in range(SCHEDULERS)
    ]
    queue = await open_at()
    for _ in range(36):  # 10:30 to 22:30 in steps of 20 minutes
        await asyncio.gather(*(scheduler.run_due() for scheduler in schedulers))
        await finish_everything_due(queue)
        clock.advance(20 * 60)
    for _ in range(4):  # let "all" catch up without a new slot coming due
        clock.advance(2.0)
        await asyncio.gather(*(scheduler.run_due() for scheduler in schedulers))
        await finish_everything_due(queue)

    jobs = await all_jobs(queue)
    counts = Counter(job.id for job in jobs)
    assert max(counts.values()) == 1
    expected = {slot_at(h, schedule="latest") for h in range(10, 23)}
    expected |= {slot_at(h, schedule="backlog") for h in range(8, 23)}
    assert set(counts) == expected
    assert all(job.status is JobStatus.SUCCEEDED and job.attempts == 1 for job in jobs)


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "active"])
async def test_a_slot_stored_by_another_scheduler_after_our_lookup_is_already_there(
    open_at: Opener, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, finished: bool
) -> None:
    """Another scheduler stores the slot between our lookup and our enqueue. The backend
    refuses the duplicate id (each in its own words) or, while the slot's job is active,
    answers with it by its dedupe key: either way nothing new is stored and nothing fails."""
    schedule = hourly()
    other = await open_at()
    stored = await other.enqueue(schedule.job(10, now=clock()))
    if finished:  # then its dedupe key is free: only the id can clash
        await other.complete(await claim(other, stored.id), "done")
    before = await other.get(stored.id)

    queue = await open_at()
    real_get = queue.get
    lookups: list[str] = []

    async def get_missing_once(job_id: str) -> Job | None:
        lookups.append(job_id)
        return None if len(lookups) == 1 else await real_get(job_id)

    monkeypatch.setattr(queue, "get", get_missing_once)
    clock.advance(1.0)  # our job differs from the stored one (created later)
    placed = await place_slot(queue, schedule, 10, clock())
    assert placed.placement is not Placement.BLOCKED
    assert placed.job.id == stored.id
    if finished:
        assert placed.placement is Placement.PRESENT
        assert lookups == [stored.id, stored.id], "the refusal was checked against the queue"
    monkeypatch.undo()
    assert await all_jobs(queue) == [before], "the stored job is untouched"


async def test_another_value_error_is_not_mistaken_for_a_stored_slot(
    queue: Queue, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(job: Job) -> Job:
        raise ValueError("payload holds a lone surrogate")

    monkeypatch.setattr(queue, "enqueue", refuse)
    with pytest.raises(ValueError, match="lone surrogate"):
        await place_slot(queue, hourly(), 10, clock())
