"""PostgreSQL backend: complete_and_claim completes a job and claims the next ones in one
statement, with the fencing of complete and the order of claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from clock import FakeClock
from harness_postgres import raw_execute

from gaia.validator.core import JobStatus, LeaseLost, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres import PostgresQueue

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg(postgres_url: str, clock: FakeClock) -> AsyncIterator[PostgresQueue]:
    queue = await open_queue(postgres_url, clock=clock)
    assert isinstance(queue, PostgresQueue)
    try:
        yield queue
    finally:
        await queue.close()


async def test_completes_and_claims_the_best_jobs(pg: PostgresQueue, clock: FakeClock) -> None:
    first = await pg.enqueue(new_job("kind.a", {"n": 0}, priority=9, now=clock()))
    low = await pg.enqueue(new_job("kind.a", {"n": 1}, priority=0, now=clock()))
    high = await pg.enqueue(new_job("kind.b", {"n": 2}, priority=5, now=clock()))
    lease = await pg.claim("w1", lease_seconds=60.0)
    assert lease is not None and lease.job_id == first.id
    clock.advance(1)
    done, leases = await pg.complete_and_claim(lease, {"ok": 1}, count=5, lease_seconds=20.0)
    assert done.status is JobStatus.SUCCEEDED and done.result == {"ok": 1}
    assert done == await pg.get(first.id)
    assert [claimed.job_id for claimed in leases] == [high.id, low.id]
    assert all(claimed.worker_id == "w1" for claimed in leases)
    assert all(claimed.job.lease_expires_at == clock() + 20.0 for claimed in leases)
    assert all(claimed.job.attempts == 1 for claimed in leases)
    done, none_left = await pg.complete_and_claim(leases[0])
    assert done.status is JobStatus.SUCCEEDED and none_left == []


async def test_types_limit_what_is_claimed(pg: PostgresQueue, clock: FakeClock) -> None:
    await pg.enqueue_many(
        [new_job(kind, {}, now=clock()) for kind in ("kind.a", "kind.a", "kind.b")]
    )
    lease = await pg.claim("w1", types=["kind.a"])
    assert lease is not None
    _, leases = await pg.complete_and_claim(lease, count=5, types=["kind.b"])
    assert [claimed.job.type for claimed in leases] == ["kind.b"]
    with pytest.raises(ValueError, match="at least one job type"):
        await pg.complete_and_claim(leases[0], types=[])
    done, none = await pg.complete_and_claim(leases[0], types=["kind.c"])
    assert done.status is JobStatus.SUCCEEDED and none == []
    assert (await pg.stats()).total(JobStatus.QUEUED) == 1


async def test_concurrent_calls_each_get_their_own_jobs(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    await pg.enqueue_many([new_job("kind.a", {"i": i}, now=clock()) for i in range(12)])
    held = await pg.claim_many("w1", 4)
    results = await asyncio.gather(*(pg.complete_and_claim(lease, count=2) for lease in held))
    assert all(job.status is JobStatus.SUCCEEDED for job, _ in results)
    claimed = [lease.job_id for _, leases in results for lease in leases]
    assert len(claimed) == 8 and len(set(claimed) | {lease.job_id for lease in held}) == 12
    assert (await pg.stats()).total(JobStatus.SUCCEEDED) == 4


async def test_a_stale_lease_raises_and_keeps_nothing_claimed(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    stale = await pg.enqueue(new_job("kind.a", {}, now=clock()))
    other = await pg.enqueue(new_job("kind.a", {}, now=clock()))
    lease = await pg.claim("w1")
    assert lease is not None and lease.job_id == stale.id
    await pg.cancel(stale.id)
    with pytest.raises(LeaseLost):
        await pg.complete_and_claim(lease, count=3)
    for _ in range(200):  # the claimed job is handed back in the background
        job = await pg.get(other.id)
        if job is not None and job.status is JobStatus.QUEUED and job.lease_token == 1:
            break
        await asyncio.sleep(0.02)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0
    assert (await pg.get(stale.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_a_corrupt_row_is_replaced_by_the_next_job(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    jobs = await pg.enqueue_many([new_job("kind.a", {"i": i}, now=clock()) for i in range(4)])
    lease = await pg.claim("w1")
    assert lease is not None and lease.job_id == jobs[0].id
    await raw_execute(pg, "UPDATE gaia_queue.jobs SET payload = '[1]' WHERE id = $1", jobs[1].id)
    _, leases = await pg.complete_and_claim(lease, count=2)
    assert [claimed.job_id for claimed in leases] == [jobs[2].id, jobs[3].id]
    dead = await pg.get(jobs[1].id)
    assert dead is not None and dead.status is JobStatus.DEAD


async def test_bad_arguments_are_refused(pg: PostgresQueue, clock: FakeClock) -> None:
    await pg.enqueue(new_job("kind.a", {}, now=clock()))
    lease = await pg.claim("w1")
    assert lease is not None
    with pytest.raises(ValueError, match="count must be >= 1"):
        await pg.complete_and_claim(lease, count=0)
    with pytest.raises(ValueError, match="lease_seconds must be > 0"):
        await pg.complete_and_claim(lease, lease_seconds=0.0)
    with pytest.raises(TypeError, match="not the string"):
        await pg.complete_and_claim(lease, types="kind.a")
    with pytest.raises(ValueError):
        await pg.complete_and_claim(lease, {"not": float("nan")})
    assert (await pg.get(lease.job_id)).status is JobStatus.RUNNING  # type: ignore[union-attr]


async def test_a_batch_run_again_after_a_lost_reply_recognises_its_commit(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    """A batch statement that ran again (its first run committed, the reply was lost) matches
    nothing: a completion already succeeded under its own lease is that first run's work."""
    from gaia.validator.queues.postgres.completing import completion

    await pg.enqueue(new_job("kind.a", {}, now=clock()))
    lease = await pg.claim("w1")
    assert lease is not None
    await pg.complete(lease, {"r": 1})  # the first run
    again = await pg._completer.outcomes([completion(lease, {"r": 1})], {}, clock(), retried=True)
    assert again == [await pg.get(lease.job_id)]
    fresh = await pg._completer.outcomes([completion(lease, {"r": 1})], {}, clock(), retried=False)
    assert isinstance(fresh[0], LeaseLost)
