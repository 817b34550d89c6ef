"""Catch-up policies on every backend, with a hand-moved clock: a first start, a restart after
downtime, a restart within the queue's retention, and a slot that comes while the previous run
is still active. The scheduler's passes are driven by ``run_due()``: no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from manual_clock import ManualClock
from slot_jobs import (
    HOUR,
    TICK,
    Opener,
    Tick,
    all_jobs,
    claim,
    finish,
    hourly,
    slot_at,
    slot_ids,
)

from gaia.validator.core import JobStatus, Queue
from gaia.validator.scheduling import Schedule, Scheduler

RECHECK = 60.0


def at(hour: int, minute: int = 0, day: int = 6) -> float:
    return datetime(2024, 5, day, hour, minute, tzinfo=UTC).timestamp()


async def test_first_start_latest_enqueues_the_current_slot_due_at_its_time(
    queue: Queue, clock: ManualClock
) -> None:
    scheduler = Scheduler(queue, [hourly()], clock=clock)
    wake_at = await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(10)]
    job = await queue.get(slot_at(10))
    assert job is not None
    assert job.not_before == at(10), "the slot's job is due at the slot time, not at enqueue"
    assert job.dedupe_key == "schedule:hourly"
    assert job.status is JobStatus.QUEUED
    assert wake_at == at(11), "the next pass is due at the next slot"
    assert await scheduler.run_due() == at(11)
    assert await slot_ids(queue) == [slot_at(10)], "a second pass in the same slot adds nothing"


async def test_first_start_none_waits_for_the_next_slot(queue: Queue, clock: ManualClock) -> None:
    scheduler = Scheduler(queue, [hourly(catch_up="none")], clock=clock)
    assert await scheduler.run_due() == at(11)
    assert await slot_ids(queue) == []
    clock.now = at(11)
    await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(11)], "a slot reached while running is enqueued"


async def test_first_start_all_enqueues_up_to_max_catch_up_slots_one_at_a_time(
    queue: Queue, clock: ManualClock
) -> None:
    scheduler = Scheduler(
        queue, [hourly(catch_up="all", max_catch_up=3)], clock=clock, recheck=RECHECK
    )
    await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(8)], "oldest first; 9 and 10 wait for 8's run"
    for hour in (8, 9, 10):
        await finish(queue, slot_at(hour))
        clock.advance(RECHECK)  # the waiting slot is tried again
        await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(8), slot_at(9), slot_at(10)]


@pytest.mark.parametrize(
    ("policy", "expected_hours"),
    [("latest", [15]), ("none", []), ("all", [13, 14, 15])],
)
async def test_catch_up_after_downtime(
    queue: Queue, clock: ManualClock, policy: str, expected_hours: list[int]
) -> None:
    """Slot 10 ran; the schedulers were down from 10:30 to 15:40 (slots 11 to 15 missed)."""
    options: dict[str, object] = {"catch_up": policy}
    if policy == "all":
        options["max_catch_up"] = 3
    before = Scheduler(queue, [hourly()], clock=clock)
    await before.run_due()
    await finish(queue, slot_at(10))

    clock.now = at(15, 40)
    after = Scheduler(queue, [hourly("hourly", **options)], clock=clock, recheck=RECHECK)
    await after.run_due()
    for hour in expected_hours:  # "all" runs the missed slots one after another
        await finish(queue, slot_at(hour))
        clock.advance(RECHECK)
        await after.run_due()

    assert await slot_ids(queue) == sorted(slot_at(h) for h in [10, *expected_hours])
    assert all(job.status is JobStatus.SUCCEEDED for job in await all_jobs(queue))
    clock.now = at(16)
    await after.run_due()
    assert slot_at(16) in await slot_ids(queue), "after catching up, the schedule goes on"


async def test_a_restart_does_not_enqueue_finished_slots_again(
    open_at: Opener, clock: ManualClock
) -> None:
    queue = await open_at()
    first = Scheduler(queue, [hourly(catch_up="all", max_catch_up=5)], clock=clock, recheck=1.0)
    await first.run_due()  # slots 6 to 10 owed on a first start; 6 enqueued
    for hour in (6, 7, 8, 9, 10):
        await finish(queue, slot_at(hour))
        clock.advance(1.0)
        await first.run_due()
    ran = {job.id: job.finished_at for job in await all_jobs(queue)}
    assert sorted(ran) == [slot_at(h) for h in (6, 7, 8, 9, 10)]

    clock.advance(HOUR)  # 11:30, well within the default one-day retention
    restarted = Scheduler(await open_at(), [hourly(catch_up="all", max_catch_up=5)], clock=clock)
    await restarted.run_due()
    assert await slot_ids(queue) == sorted([*ran, slot_at(11)]), "only the new slot is added"
    for job in await all_jobs(queue):
        if job.id in ran:
            assert (job.status, job.attempts, job.finished_at) == (
                JobStatus.SUCCEEDED,
                1,
                ran[job.id],
            ), f"{job.id} ran once and was left alone"


async def test_a_slot_waits_while_the_previous_run_is_active_then_runs_late(
    queue: Queue, clock: ManualClock
) -> None:
    scheduler = Scheduler(queue, [hourly()], clock=clock, recheck=RECHECK)
    await scheduler.run_due()
    lease = await claim(queue, slot_at(10))  # the 10:00 run is still running at 11:00

    clock.now = at(11)
    wake_at = await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(10)], "at most one run of a schedule is active"
    assert wake_at == at(11) + RECHECK, "the waiting slot is tried again after `recheck`"

    await queue.complete(lease, "done")
    clock.now = at(11) + RECHECK / 2
    await scheduler.run_due()
    assert await queue.get(slot_at(11)) is None, "not tried again before `recheck` passed"
    clock.now = at(11) + RECHECK
    await scheduler.run_due()
    late = await queue.get(slot_at(11))
    assert late is not None, "the slot runs once the previous run finished"
    assert late.not_before == at(11)
    assert late.created_at == at(11) + RECHECK


async def test_latest_drops_a_waiting_slot_when_the_next_one_comes(
    queue: Queue, clock: ManualClock
) -> None:
    scheduler = Scheduler(queue, [hourly()], clock=clock, recheck=RECHECK)
    await scheduler.run_due()
    lease = await claim(queue, slot_at(10))
    for now in (at(11), at(11, 30), at(12), at(12, 1)):
        clock.now = now
        await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(10)]

    await queue.complete(lease, "done")
    clock.now = at(12, 2)
    await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(10), slot_at(12)], "11 was superseded by 12"


async def test_all_keeps_waiting_slots_and_runs_them_in_order(
    queue: Queue, clock: ManualClock
) -> None:
    scheduler = Scheduler(
        queue, [hourly(catch_up="all", max_catch_up=2)], clock=clock, recheck=RECHECK
    )
    clock.now = at(10)
    await scheduler.run_due()  # slots 9 and 10 owed; 9 enqueued
    lease = await claim(queue, slot_at(9))
    for hour in (11, 12):  # 9 runs for three hours: 10, 11 and 12 wait, at most two are kept
        clock.now = at(hour)
        await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(9)]

    await queue.complete(lease, "done")
    clock.advance(RECHECK)
    await scheduler.run_due()
    await finish(queue, slot_at(11))
    clock.advance(RECHECK)
    await scheduler.run_due()
    await finish(queue, slot_at(12))
    clock.advance(RECHECK)
    await scheduler.run_due()
    assert await slot_ids(queue) == [slot_at(9), slot_at(11), slot_at(12)], "10 was dropped"


async def test_an_older_slot_never_runs_after_a_newer_one(
    open_at: Opener, clock: ManualClock
) -> None:
    """Slot 10 was missed. A scheduler whose clock leads enqueues slot 11; one whose clock lags
    by half a minute still owes slot 10, meets the active run of 11, and drops 10."""
    clock.now = at(11)  # the queue's clock
    leading = Scheduler(await open_at(), [hourly()], clock=ManualClock(at(11)))
    lagging = Scheduler(await open_at(), [hourly()], clock=ManualClock(at(10, 59) + 30))
    queue = await open_at()
    await leading.run_due()
    lease = await claim(queue, slot_at(11))
    await lagging.run_due()
    await queue.complete(lease, "done")
    await lagging.run_due()
    assert await slot_ids(queue) == [slot_at(11)]


async def test_a_slot_older_than_the_retention_is_not_caught_up_after_a_restart(
    queue: Queue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A weekly slot ran on Monday; by Wednesday the queue has purged its finished job, so a
    restarted scheduler cannot tell it ran: it must not run it again."""
    weekly = Schedule(
        "weekly",
        TICK,
        every=timedelta(days=7),
        payload=Tick("w"),
        start=datetime(2024, 1, 1, tzinfo=UTC),  # Mondays at 00:00
    )
    clock.now = at(0, 30)  # Monday 2024-05-06, 00:30
    await Scheduler(queue, [weekly], clock=clock).run_due()
    monday = weekly.job_id(weekly.latest_due(clock.now))  # type: ignore[arg-type]
    await finish(queue, monday)
    clock.now = at(12, day=8)  # Wednesday: past the one-day retention
    await queue.reap()
    assert await queue.get(monday) is None, "the finished slot's job was purged"

    await Scheduler(queue, [weekly], clock=clock).run_due()
    assert await all_jobs(queue) == [], "the slot that already ran is not run again"
    assert any("older than the queue's retention" in r.getMessage() for r in caplog.records)
