"""The Scheduler as a service: its loop on the real clock (tiny periods), stop (wakes the loop,
lets an enqueue in flight finish, cancels one that hangs), queue errors retried with backoff,
the retention limit of catch-up, and the errors its inputs get."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from manual_clock import ManualClock
from slot_jobs import TICK, Tick, all_jobs, finish, hourly, slot_at

from gaia.validator.core import Job, Queue
from gaia.validator.queues import open_queue
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.scheduling import CatchUp, Schedule, Scheduler

HANG_GUARD = 30.0
"""Seconds after which a wait is a hang (a failure), never a measure of speed."""


async def wait_until_jobs(queue: Queue, count: int) -> list[Job]:
    async with asyncio.timeout(HANG_GUARD):
        while len(jobs := await all_jobs(queue)) < count:
            await asyncio.sleep(0.02)
    return jobs


async def work(queue: Queue) -> None:
    """A worker's part, until cancelled: run every job that comes due."""
    while True:
        lease = await queue.claim("test-worker", types=[TICK.name], wait=0.05)
        if lease is not None:
            await queue.complete(lease, "done")


def frequent(name: str = "often", every: timedelta = timedelta(milliseconds=50)) -> Schedule:
    return Schedule(name, TICK, every=every, payload=Tick(name), catch_up=CatchUp.NONE)


@pytest.fixture(params=["memory", "sqlite"])
async def real_time_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'queue.db'}"
    queue = await open_queue(url)
    yield queue
    await queue.close()


# -- the loop on the real clock ----------------------------------------------------------------
async def test_the_loop_enqueues_slots_as_they_come_due(real_time_queue: Queue) -> None:
    schedule = frequent()
    started = time.time()
    worker = asyncio.create_task(work(real_time_queue))
    try:
        async with Scheduler(real_time_queue, [schedule]) as scheduler:
            assert scheduler.running
            jobs = await wait_until_jobs(real_time_queue, 3)
        assert not scheduler.running
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    slots = {job.id: schedule.slot_of(job.id) for job in jobs}
    assert None not in slots.values(), "slot jobs only"
    assert len(set(slots.values())) == len(jobs) >= 3, "each slot enqueued once"
    for job in jobs:
        slot = slots[job.id]
        assert slot is not None
        assert schedule.slot_time(slot) > started, "none: no slot from before the start"
        assert job.not_before == schedule.slot_time(slot)
        assert job.created_at >= job.not_before, "a slot is enqueued when it is due, not before"


async def test_stop_wakes_a_scheduler_sleeping_until_a_distant_slot() -> None:
    queue = MemoryQueue()
    scheduler = Scheduler(queue, [frequent("daily", every=timedelta(days=1))])
    await scheduler.start()
    for _ in range(10):
        await asyncio.sleep(0)  # let the first pass run and the loop go to sleep
    async with asyncio.timeout(HANG_GUARD):
        await scheduler.stop()
    assert not scheduler.running
    await scheduler.stop()  # twice is fine


async def test_stop_lets_an_enqueue_in_flight_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = MemoryQueue()
    entered, release = asyncio.Event(), asyncio.Event()
    real_enqueue = queue.enqueue

    async def slow_enqueue(job: Job) -> Job:
        entered.set()
        await release.wait()
        return await real_enqueue(job)

    monkeypatch.setattr(queue, "enqueue", slow_enqueue)
    clock = ManualClock(datetime(2024, 5, 6, 10, 30, tzinfo=UTC).timestamp())
    scheduler = Scheduler(queue, [hourly(), hourly("second")], clock=clock)
    await scheduler.start()
    async with asyncio.timeout(HANG_GUARD):
        await entered.wait()
    stopping = asyncio.create_task(scheduler.stop())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not stopping.done(), "stop waits for the enqueue in flight"
    release.set()
    async with asyncio.timeout(HANG_GUARD):
        await stopping
    assert [job.id for job in await all_jobs(queue)] == [slot_at(10)], "no new enqueue began"


async def test_stop_cancels_an_enqueue_that_hangs_past_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = MemoryQueue()
    entered = asyncio.Event()

    async def hung_enqueue(job: Job) -> Job:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(queue, "enqueue", hung_enqueue)
    scheduler = Scheduler(queue, [frequent()], stop_grace=0.05)
    await scheduler.start()
    async with asyncio.timeout(HANG_GUARD):
        await entered.wait()
        await scheduler.stop()
    assert not scheduler.running
    assert await all_jobs(queue) == []


async def test_a_closed_queue_ends_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    queue = MemoryQueue()
    await queue.close()
    scheduler = Scheduler(queue, [frequent()])
    await scheduler.start()
    async with asyncio.timeout(HANG_GUARD):
        while scheduler.running:
            await asyncio.sleep(0.01)
    assert "the queue is closed" in caplog.text
    await scheduler.stop()


# -- queue errors --------------------------------------------------------------------------
async def test_queue_errors_are_retried_with_growing_backoff(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(datetime(2024, 5, 6, 10, 30, tzinfo=UTC).timestamp())
    queue = MemoryQueue(clock=clock)
    real_get = queue.get
    failures = [ConnectionError("server went away"), TimeoutError("no reply"), OSError("reset")]

    async def flaky_get(job_id: str) -> Job | None:
        if failures:
            raise failures.pop(0)
        return await real_get(job_id)

    monkeypatch.setattr(queue, "get", flaky_get)
    scheduler = Scheduler(queue, [hourly()], clock=clock)
    waits = []
    for _ in range(3):
        wake_at = await scheduler.run_due()
        waits.append(wake_at - clock())
        assert await all_jobs(queue) == []
        assert await scheduler.run_due() == wake_at, "no attempt before the backoff ends"
        clock.now = wake_at
    assert waits == [1.0, 2.0, 4.0]
    await scheduler.run_due()
    assert [job.id for job in await all_jobs(queue)] == [slot_at(10)]
    assert "server went away" in caplog.text and "trying again in 2 s" in caplog.text


# -- limits --------------------------------------------------------------------------------
async def test_catch_up_beyond_the_queue_retention_runs_a_purged_slot_again(
    tmp_path: Path,
) -> None:
    """The documented limit: the queue is the record of finished slots only while it keeps
    them. Here retention is one hour and "all" looks three hours back."""
    clock = ManualClock(datetime(2024, 5, 6, 10, 30, tzinfo=UTC).timestamp())
    queue = await open_queue(f"sqlite:///{tmp_path / 'q.db'}?result_ttl=3600", clock=clock)
    try:
        await Scheduler(queue, [hourly()], clock=clock).run_due()
        await finish(queue, slot_at(10))
        clock.advance(2 * 3600)  # 12:30: slot 10 finished more than an hour ago
        await queue.reap()
        assert await queue.get(slot_at(10)) is None, "purged past retention"
        restarted = Scheduler(queue, [hourly(catch_up="all", max_catch_up=3)], clock=clock)
        await restarted.run_due()
        assert [job.id for job in await all_jobs(queue)] == [slot_at(10)], "run again"
    finally:
        await queue.close()


def test_scheduler_inputs_are_checked() -> None:
    queue = MemoryQueue()
    with pytest.raises(ValueError, match="schedule names must be unique; repeated: hourly"):
        Scheduler(queue, [hourly(), hourly(catch_up=CatchUp.NONE)])
    with pytest.raises(ValueError, match="recheck must be > 0"):
        Scheduler(queue, [hourly()], recheck=0)
    with pytest.raises(TypeError, match="schedules must be Schedule objects"):
        Scheduler(queue, [TICK])  # type: ignore[list-item]


async def test_a_scheduler_starts_once() -> None:
    scheduler = Scheduler(MemoryQueue(), [])
    assert await scheduler.run_due() == float("inf")
    async with scheduler:
        with pytest.raises(RuntimeError, match="a scheduler starts once"):
            await scheduler.start()
    with pytest.raises(RuntimeError, match="a scheduler starts once"):
        await scheduler.start()
