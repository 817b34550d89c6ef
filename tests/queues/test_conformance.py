"""One conformance suite for every queue backend (memory, SQLite, PostgreSQL, Redis).

Time is a FakeClock shared by the test and the queue, so expiry and delays need no sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from types import ModuleType

import pytest
from clock import FakeClock

from gaia.validator.core import (
    DuplicateJob,
    InvalidTransition,
    Job,
    JobError,
    JobStatus,
    LeaseLost,
    Progress,
    Queue,
    new_job,
)


def make(clock: FakeClock, job_type: str = "test.noop", **options: object) -> Job:
    return new_job(job_type, {"n": 1}, now=clock(), **options)  # type: ignore[arg-type]


async def claim(queue: Queue, worker: str = "w1", **options: object):
    lease = await queue.claim(worker, lease_seconds=10.0, **options)  # type: ignore[arg-type]
    assert lease is not None, "expected a job to claim"
    return lease


async def test_enqueue_and_get_round_trip(queue: Queue, clock: FakeClock) -> None:
    job = new_job(
        "weather.era5",
        {"run": "r1", "miners": [1, 2], "nested": {"x": 1.5, "ok": True, "none": None}},
        metadata={"origin": "test"},
        priority=3,
        max_attempts=5,
        timeout=12.5,
        memory_mb=900,
        correlation_id="corr-1",
        dedupe_key="r1:1:era5",
        now=clock(),
    )
    stored = await queue.enqueue(job)
    assert stored == job
    assert await queue.get(job.id) == job
    assert await queue.get("missing") is None


async def test_claim_order_is_priority_then_due_time_then_fifo(
    queue: Queue, clock: FakeClock
) -> None:
    low = make(clock, priority=0)
    high = make(clock, priority=5)
    early_low = make(clock, priority=0, not_before=clock() - 10)
    await queue.enqueue_many([low, high, early_low])
    order = [(await claim(queue)).job_id for _ in range(3)]
    assert order == [high.id, early_low.id, low.id]
    assert await queue.claim("w1") is None


async def test_fifo_within_equal_priority_and_time(queue: Queue, clock: FakeClock) -> None:
    jobs = [make(clock) for _ in range(5)]
    for job in jobs:
        await queue.enqueue(job)
    assert [(await claim(queue)).job_id for _ in jobs] == [job.id for job in jobs]


async def test_delayed_job_is_not_claimed_before_due(queue: Queue, clock: FakeClock) -> None:
    job = make(clock, delay=60)
    await queue.enqueue(job)
    assert await queue.claim("w1") is None
    clock.advance(61)
    assert (await claim(queue)).job_id == job.id


async def test_claim_filters_by_type(queue: Queue, clock: FakeClock) -> None:
    a = make(clock, "kind.a")
    b = make(clock, "kind.b", priority=9)
    await queue.enqueue_many([a, b])
    lease = await claim(queue, types=["kind.a"])
    assert lease.job_id == a.id
    assert await queue.claim("w1", types=["kind.a"]) is None
    assert (await claim(queue, types=["kind.b", "kind.c"])).job_id == b.id


async def test_claim_marks_running_and_counts_attempt(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock))
    lease = await claim(queue, "worker-7")
    assert lease.worker_id == "worker-7"
    assert lease.expires_at == pytest.approx(clock() + 10.0)
    stored = await queue.get(job.id)
    assert stored is not None
    assert stored.status is JobStatus.RUNNING
    assert stored.attempts == 1
    assert stored.worker_id == "worker-7"


async def test_complete_stores_result(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock))
    lease = await claim(queue)
    done = await queue.complete(lease, {"score": 0.75, "items": [1, 2]})
    assert done.status is JobStatus.SUCCEEDED
    stored = await queue.get(job.id)
    assert stored is not None and stored.result == {"score": 0.75, "items": [1, 2]}
    assert stored.finished_at is not None


async def test_complete_and_claim_completes_then_claims_the_best_due_jobs(
    queue: Queue, clock: FakeClock
) -> None:
    first = await queue.enqueue(make(clock, priority=9))
    low, high = make(clock, priority=0), make(clock, priority=5)
    later = make(clock, priority=9, delay=60)
    other = make(clock, "test.other", priority=9)
    await queue.enqueue_many([low, high, later, other])
    lease = await claim(queue, "w1", types=["test.noop"])
    assert lease.job_id == first.id
    done, leases = await queue.complete_and_claim(
        lease, {"ok": True}, count=5, types=["test.noop"], lease_seconds=10.0
    )
    assert done.status is JobStatus.SUCCEEDED and done.result == {"ok": True}
    assert [next_lease.job_id for next_lease in leases] == [high.id, low.id]
    assert all(next_lease.worker_id == "w1" for next_lease in leases)
    assert all(next_lease.job.status is JobStatus.RUNNING for next_lease in leases)
    done, none_due = await queue.complete_and_claim(leases[0], count=1, types=["test.noop"])
    assert done.id == high.id and none_due == []
    # a stale lease changes nothing and claims nothing
    await queue.complete(leases[1])
    with pytest.raises(LeaseLost):
        await queue.complete_and_claim(leases[1], count=3)
    stored = await queue.get(other.id)
    assert stored is not None and stored.status is JobStatus.QUEUED and stored.attempts == 0


async def test_heartbeat_extends_lease_so_reaper_leaves_it(queue: Queue, clock: FakeClock) -> None:
    await queue.enqueue(make(clock))
    lease = await claim(queue)
    clock.advance(8)
    lease = await queue.heartbeat(lease, lease_seconds=10.0, progress=Progress(3, 10, "lead 3"))
    assert lease.expires_at == pytest.approx(clock() + 10.0)
    clock.advance(8)  # 16 s after the claim: past the first lease, within the extended one
    assert await queue.reap() == 0
    stored = await queue.get(lease.job_id)
    assert stored is not None and stored.status is JobStatus.RUNNING
    assert stored.progress == Progress(3, 10, "lead 3")
    await queue.complete(lease)


async def test_expired_lease_is_reclaimed_and_stale_holder_fenced(
    queue: Queue, clock: FakeClock
) -> None:
    job = await queue.enqueue(make(clock, max_attempts=3))
    stale = await claim(queue, "w-old")
    clock.advance(11)
    assert (await queue.stats()).expired_leases == 1
    assert await queue.reap() == 1
    reclaimed = await queue.get(job.id)
    assert reclaimed is not None and reclaimed.status is JobStatus.QUEUED
    assert reclaimed.error is not None and reclaimed.error.kind == "lease_expired"
    fresh = await claim(queue, "w-new")
    assert fresh.token != stale.token
    with pytest.raises(LeaseLost):
        await queue.complete(stale, "stale result")
    with pytest.raises(LeaseLost):
        await queue.fail(stale, JobError("stale"))
    with pytest.raises(LeaseLost):
        await queue.heartbeat(stale)
    await queue.complete(fresh, "fresh result")
    stored = await queue.get(job.id)
    assert stored is not None and stored.result == "fresh result" and stored.attempts == 2


async def test_expired_lease_on_last_attempt_dead_letters(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock, max_attempts=1))
    await claim(queue)
    clock.advance(11)
    assert await queue.reap() == 1
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.DEAD
    assert stored.error is not None and "lease expired" in stored.error.message


async def test_retry_with_backoff_then_dead_letter(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock, max_attempts=2))
    lease = await claim(queue)
    retried = await queue.retry(lease, at=clock() + 30, error=JobError("boom", "ValueError", "tb1"))
    assert retried.status is JobStatus.RETRY_SCHEDULED
    assert await queue.claim("w1") is None
    clock.advance(31)
    lease = await claim(queue)
    assert lease.job.attempts == 2
    dead = await queue.retry(lease, at=clock() + 30, error=JobError("boom 2", "ValueError", "tb2"))
    assert dead.status is JobStatus.DEAD
    stored = await queue.get(job.id)
    assert stored is not None and stored.error == JobError("boom 2", "ValueError", "tb2")
    clock.advance(3600)
    assert await queue.claim("w1") is None


async def test_not_ready_does_not_count_an_attempt(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock, max_attempts=1))
    for _ in range(3):
        lease = await claim(queue)
        waiting = await queue.retry(lease, at=clock() + 5, count_attempt=False)
        assert waiting.status is JobStatus.RETRY_SCHEDULED and waiting.attempts == 0
        clock.advance(6)
    lease = await claim(queue)
    await queue.complete(lease)
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.SUCCEEDED


async def test_fail_dead_letters_and_requeue_revives(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock, dedupe_key="key-1"))
    lease = await claim(queue)
    dead = await queue.fail(lease, JobError("bad input", "permanent", "Traceback ..."))
    assert dead.status is JobStatus.DEAD
    assert [j.id for j in await queue.list_jobs(status=JobStatus.DEAD)] == [job.id]
    revived = await queue.requeue(job.id)
    assert revived.status is JobStatus.QUEUED and revived.attempts == 0
    duplicate = await queue.enqueue(make(clock, dedupe_key="key-1"))
    assert duplicate.id == job.id, "the requeued job holds its dedupe key again"
    lease = await claim(queue)
    assert lease.job_id == job.id
    with pytest.raises(InvalidTransition):
        await queue.requeue(job.id)


async def test_dedupe_key_is_unique_over_active_states(queue: Queue, clock: FakeClock) -> None:
    first = await queue.enqueue(make(clock, dedupe_key="run-1:miner-3:era5"))
    assert (await queue.enqueue(make(clock, dedupe_key="run-1:miner-3:era5"))).id == first.id
    lease = await claim(queue)
    assert (await queue.enqueue(make(clock, dedupe_key="run-1:miner-3:era5"))).id == first.id
    await queue.retry(lease, at=clock() + 5)
    assert (await queue.enqueue(make(clock, dedupe_key="run-1:miner-3:era5"))).id == first.id
    clock.advance(6)
    await queue.complete(await claim(queue))
    # Finished: the key is free again, as often as needed (no hidden caps).
    for _ in range(7):
        again = await queue.enqueue(make(clock, dedupe_key="run-1:miner-3:era5"))
        assert again.id != first.id
        await queue.complete(await claim(queue))
    stats = await queue.stats()
    assert stats.total(JobStatus.SUCCEEDED) == 8


async def test_batch_enqueue_dedupes_within_and_across(queue: Queue, clock: FakeClock) -> None:
    existing = await queue.enqueue(make(clock, dedupe_key="a"))
    batch = [make(clock, dedupe_key="a"), make(clock, dedupe_key="b"), make(clock)]
    batch.append(make(clock, dedupe_key="b"))
    stored = await queue.enqueue_many(batch)
    assert stored[0].id == existing.id
    assert stored[1].id == batch[1].id
    assert stored[2].id == batch[2].id
    assert stored[3].id == batch[1].id
    assert (await queue.stats()).total(JobStatus.QUEUED) == 3


async def test_a_different_job_under_a_stored_id_is_refused_as_a_duplicate(
    queue: Queue, clock: FakeClock
) -> None:
    stored = await queue.enqueue(make(clock))
    impostor = dataclasses.replace(new_job("test.noop", {"n": 2}, now=clock()), id=stored.id)
    fresh = make(clock)
    with pytest.raises(DuplicateJob, match=stored.id):
        await queue.enqueue_many([fresh, impostor])
    assert await queue.get(fresh.id) is None, "nothing of the refused batch is stored"
    kept = await queue.get(stored.id)
    assert kept is not None and kept.payload == stored.payload


async def test_cancel_queued_job(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock, dedupe_key="k"))
    cancelled = await queue.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert await queue.claim("w1") is None
    assert (await queue.enqueue(make(clock, dedupe_key="k"))).id != job.id


async def test_cancel_running_job_fences_its_holder(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock))
    lease = await claim(queue)
    assert (await queue.cancel(job.id)).status is JobStatus.CANCELLED
    with pytest.raises(LeaseLost):
        await queue.heartbeat(lease)
    with pytest.raises(LeaseLost):
        await queue.complete(lease, 1)
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED


async def test_cancel_finished_job_is_refused(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock))
    await queue.complete(await claim(queue))
    with pytest.raises(InvalidTransition):
        await queue.cancel(job.id)


async def test_release_requeues_without_counting_attempt(queue: Queue, clock: FakeClock) -> None:
    job = await queue.enqueue(make(clock))
    lease = await claim(queue)
    released = await queue.release(lease)
    assert released.status is JobStatus.QUEUED and released.attempts == 0
    with pytest.raises(LeaseLost):
        await queue.complete(lease)
    assert (await claim(queue, "w2")).job_id == job.id


async def test_results_are_purged_after_retention(
    queue: Queue, clock: FakeClock, harness: ModuleType
) -> None:
    job = await queue.enqueue(make(clock))
    await queue.complete(await claim(queue), "kept for a day")
    clock.advance(3600)
    await queue.reap()
    assert await queue.get(job.id) is not None
    clock.advance(2 * 86_400)
    await queue.reap()
    assert await queue.get(job.id) is None


async def test_stats_counts_by_type_and_status(queue: Queue, clock: FakeClock) -> None:
    await queue.enqueue_many([make(clock, "kind.a"), make(clock, "kind.a"), make(clock, "kind.b")])
    lease = await claim(queue, types=["kind.b"])
    clock.advance(5)
    stats = await queue.stats()
    assert stats.counts["kind.a"][JobStatus.QUEUED] == 2
    assert stats.counts["kind.b"][JobStatus.RUNNING] == 1
    assert stats.oldest_due_age == pytest.approx(5.0, abs=0.01)
    await queue.complete(lease)
    stats = await queue.stats()
    assert stats.counts["kind.b"][JobStatus.SUCCEEDED] == 1
    assert stats.total(JobStatus.QUEUED) == 2


async def test_list_jobs_filters(queue: Queue, clock: FakeClock) -> None:
    a = await queue.enqueue(make(clock, "kind.a"))
    b = await queue.enqueue(make(clock, "kind.b"))
    assert [j.id for j in await queue.list_jobs(type="kind.b")] == [b.id]
    assert [j.id for j in await queue.list_jobs(status=JobStatus.QUEUED)] == [a.id, b.id]
    assert await queue.list_jobs(status=JobStatus.DEAD) == []


async def test_claim_waits_for_an_enqueue(queue: Queue, clock: FakeClock) -> None:
    async def enqueue_later() -> Job:
        await asyncio.sleep(0.2)
        return await queue.enqueue(make(clock))

    producer = asyncio.create_task(enqueue_later())
    started = time.monotonic()
    lease = await queue.claim("w1", wait=5.0)
    job = await producer
    assert lease is not None and lease.job_id == job.id
    assert time.monotonic() - started < 4.0, "the claim should wake on the enqueue"


async def test_claim_wait_times_out_empty(queue: Queue) -> None:
    assert await queue.claim("w1", wait=0.2) is None


async def test_corrupt_record_is_dead_lettered_not_raised(
    queue: Queue, clock: FakeClock, harness: ModuleType
) -> None:
    bad_id = await harness.write_corrupt_job(queue, "test.noop")
    if bad_id is None:
        pytest.skip("this backend holds jobs as objects: no bytes to corrupt")
    good = await queue.enqueue(make(clock))
    lease = await claim(queue)
    assert lease.job_id == good.id
    assert await queue.claim("w1") is None
    dead = await queue.list_jobs(status=JobStatus.DEAD)
    assert [j.id for j in dead] == [bad_id]
    assert dead[0].error is not None and "invalid" in dead[0].error.message.lower()
